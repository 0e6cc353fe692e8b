//! A1111's emphasis syntax: `parse_prompt_attention` of its `modules/prompt_parser.py`, rule for rule.
//!
//! - `(text)` multiplies the attention to `text` by 1.1, `[text]` by 1/1.1, `(text:1.3)` by 1.3; nesting
//!   multiplies;
//! - `\(` `\)` `\[` `\]` `\\` are the characters themselves (a lone `\` vanishes, as in A1111);
//! - a bracket left open closes at the end of the prompt; a closing bracket with nothing open is text;
//! - `BREAK` (a whole word) ends the chunk: it becomes the entry `("BREAK", -1.0)`;
//! - neighbouring runs of equal weight are merged.
//!
//! The weights are f64, multiplied in the order A1111 multiplies them, so they equal its values exactly.

/// One run of text and its weight; `("BREAK", -1.0)` marks a chunk break.
pub type Weighted = (String, f64);

/// Whether an entry is A1111's chunk break (a `BREAK` inside brackets has its weight scaled and is text).
pub fn is_break(entry: &Weighted) -> bool {
    entry.0 == "BREAK" && entry.1 == -1.0
}

/// One match of A1111's `re_attention`.
enum Piece<'a> {
    /// `\(`, `\)`, `\[`, `\]`, `\\`, or a lone `\`: the text after the backslash.
    Escaped(&'a str),
    OpenRound,
    OpenSquare,
    /// `:\s*([+-]?[.\d]+)\s*\)` — the weight's text.
    Weight(&'a str),
    CloseRound,
    CloseSquare,
    /// `[^\\()\[\]:]+` or a lone `:` (the text is the whole match).
    Text,
}

/// The next piece of `s` (non-empty), as Python's `re` picks the first alternative that matches.
fn next_piece(s: &str) -> (Piece<'_>, usize) {
    let b = s.as_bytes();
    match b[0] {
        b'\\' => match b.get(1) {
            Some(b'(' | b')' | b'[' | b']' | b'\\') => (Piece::Escaped(&s[1..2]), 2),
            _ => (Piece::Escaped(""), 1),
        },
        b'(' => (Piece::OpenRound, 1),
        b'[' => (Piece::OpenSquare, 1),
        b')' => (Piece::CloseRound, 1),
        b']' => (Piece::CloseSquare, 1),
        b':' => match weight_at(s) {
            Some((w, len)) => (Piece::Weight(w), len),
            None => (Piece::Text, 1),
        },
        _ => {
            let end = s.find(['\\', '(', ')', '[', ']', ':']).unwrap_or(s.len());
            (Piece::Text, end)
        }
    }
}

/// `:\s*([+-]?[.\d]+)\s*\)` at the start of `s`: the number's text and the match length. `[.\d]+` is
/// greedy, and backtracking cannot help (what follows must be whitespace or `)`), so one pass decides.
fn weight_at(s: &str) -> Option<(&str, usize)> {
    let skip_ws = |from: usize| from + s[from..].chars().take_while(|c| c.is_whitespace()).map(char::len_utf8).sum::<usize>();
    let start = skip_ws(1);
    let b = s.as_bytes();
    let mut i = start;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = i;
    while matches!(b.get(i), Some(c) if *c == b'.' || c.is_ascii_digit()) {
        i += 1;
    }
    if i == digits {
        return None;
    }
    let end = skip_ws(i);
    (b.get(end) == Some(&b')')).then(|| (&s[start..i], end + 1))
}

/// Python's `float()` on the weight's text (`[+-]?[.\d]+`): None where Python would raise (e.g. `1.2.3`).
fn python_float(t: &str) -> Option<f64> {
    let body = t.trim_start_matches(['+', '-']);
    if body.matches('.').count() > 1 || body == "." {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Python's `\w` (Unicode word characters).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `re.split(r"\s*\bBREAK\b\s*", text)`.
fn split_break(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut last = 0;
    let mut search = 0;
    while let Some(rel) = text[search..].find("BREAK") {
        let at = search + rel;
        let end = at + 5;
        let before_ok = text[..at].chars().next_back().is_none_or(|c| !is_word(c));
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_word(c));
        if !(before_ok && after_ok) {
            search = at + 1;
            continue;
        }
        // Leading whitespace back to the previous split (regex search is leftmost: the match starts at
        // the first whitespace character of the run before BREAK).
        let ws_start = last + text[last..at].trim_end().len();
        let ws_end = end + (text[end..].len() - text[end..].trim_start().len());
        parts.push(&text[last..ws_start]);
        last = ws_end;
        search = ws_end.max(at + 1);
    }
    parts.push(&text[last..]);
    parts
}

/// A1111's `parse_prompt_attention(text)`.
pub fn parse_prompt_attention(text: &str) -> Vec<Weighted> {
    let mut res: Vec<Weighted> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let round_mul = 1.1;
    let square_mul = 1.0 / 1.1;
    fn multiply_range(res: &mut [Weighted], start: usize, m: f64) {
        for r in &mut res[start..] {
            r.1 *= m;
        }
    }
    let mut rest = text;
    while !rest.is_empty() {
        let (piece, len) = next_piece(rest);
        let whole = &rest[..len];
        rest = &rest[len..];
        match piece {
            Piece::Escaped(t) => res.push((t.to_string(), 1.0)),
            Piece::OpenRound => round.push(res.len()),
            Piece::OpenSquare => square.push(res.len()),
            Piece::Weight(w) if !round.is_empty() && python_float(w).is_some() => {
                let start = round.pop().unwrap_or(0);
                multiply_range(&mut res, start, python_float(w).unwrap_or(1.0));
            }
            Piece::CloseRound if !round.is_empty() => {
                let start = round.pop().unwrap_or(0);
                multiply_range(&mut res, start, round_mul);
            }
            Piece::CloseSquare if !square.is_empty() => {
                let start = square.pop().unwrap_or(0);
                multiply_range(&mut res, start, square_mul);
            }
            _ => {
                for (i, part) in split_break(whole).into_iter().enumerate() {
                    if i > 0 {
                        res.push(("BREAK".into(), -1.0));
                    }
                    res.push((part.to_string(), 1.0));
                }
            }
        }
    }
    for pos in round {
        multiply_range(&mut res, pos, round_mul);
    }
    for pos in square {
        multiply_range(&mut res, pos, square_mul);
    }
    if res.is_empty() {
        res.push((String::new(), 1.0));
    }
    let mut i = 0;
    while i + 1 < res.len() {
        if res[i].1 == res[i + 1].1 {
            let next = res.remove(i + 1);
            res[i].0.push_str(&next.0);
        } else {
            i += 1;
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Weighted> {
        parse_prompt_attention(s)
    }
    fn v(items: &[(&str, f64)]) -> Vec<Weighted> {
        items.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    /// The doctests of A1111's `parse_prompt_attention`.
    #[test]
    fn a1111_doctests() {
        assert_eq!(p("normal text"), v(&[("normal text", 1.0)]));
        assert_eq!(p("an (important) word"), v(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)]));
        assert_eq!(p("(unbalanced"), v(&[("unbalanced", 1.1)]));
        assert_eq!(p("\\(literal\\]"), v(&[("(literal]", 1.0)]));
        assert_eq!(p("(unnecessary)(parens)"), v(&[("unnecessaryparens", 1.1)]));
        assert_eq!(
            p("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))))."),
            v(&[
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.0),
            ])
        );
        assert_eq!(p("(a (b) c)"), v(&[("a ", 1.1), ("b", 1.2100000000000002), (" c", 1.1)]));
        assert_eq!(p("[a [b] c]"), v(&[("a ", 0.9090909090909091), ("b", 0.8264462809917354), (" c", 0.9090909090909091)]));
        assert_eq!(p("a BREAK b"), v(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(p(""), v(&[("", 1.0)]));
        // Closing brackets with nothing open, and a weight with no open bracket, are text.
        assert_eq!(p("a) b] c:1.2)"), v(&[("a) b] c:1.2)", 1.0)]));
        // A lone backslash vanishes; an escaped one stays.
        assert_eq!(p("a\\b \\\\ c"), v(&[("ab \\ c", 1.0)]));
        // Spaces around the weight; negative and dotted weights.
        assert_eq!(p("(x: 1.5 )"), v(&[("x", 1.5)]));
        assert_eq!(p("(x:-1)"), v(&[("x", -1.0)]));
        assert_eq!(p("(x:.5)"), v(&[("x", 0.5)]));
        // Not a number: the colon text stays text (A1111 itself raises here), the bracket closes at the end.
        assert_eq!(p("(x:1.2.3)"), v(&[("x:1.2.3)", 1.1)]));
        // BREAK only as a whole word; inside brackets it is scaled (and then only text to the chunker).
        assert_eq!(p("BREAKFAST"), v(&[("BREAKFAST", 1.0)]));
        assert_eq!(p("aBREAK b"), v(&[("aBREAK b", 1.0)]));
        assert_eq!(p("a  BREAK\n b"), v(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]));
        assert_eq!(p("BREAK BREAK"), v(&[("", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("", 1.0)]));
        let inside = p("(a BREAK b)");
        assert!(inside.iter().all(|e| !is_break(e)), "{inside:?}");
        // Unclosed square bracket and nested weights.
        assert_eq!(p("[a (b:2)"), v(&[("a ", 0.9090909090909091), ("b", 1.8181818181818181)]));
    }
}
