//! `png-info`: the text chunks of an image, and an A1111 infotext (`prompt\nNegative prompt: …\nSteps:
//! 20, Sampler: …`) split into its fields.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// The `parameters` text and every other text chunk of a PNG; a JPEG or WebP (whose text lives in EXIF,
/// which wgsd does not read) gives none. Bytes that are no image are a 400.
pub fn text_chunks(bytes: &[u8]) -> ApiResult<(String, Map<String, Value>)> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let format = image::guess_format(bytes).map_err(|_| ApiError::bad_request("image: not a PNG, JPEG or WebP image"))?;
        return match format {
            image::ImageFormat::Jpeg | image::ImageFormat::WebP => Ok((String::new(), Map::new())),
            _ => Err(ApiError::bad_request("image: not a PNG, JPEG or WebP image")),
        };
    }
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().map_err(|e| ApiError::bad_request(format!("image: not a readable PNG: {e}")))?;
    let info = reader.info();
    let mut items = Map::new();
    for t in &info.uncompressed_latin1_text {
        items.insert(t.keyword.clone(), Value::String(t.text.clone()));
    }
    for t in &info.compressed_latin1_text {
        if let Ok(text) = t.get_text() {
            items.insert(t.keyword.clone(), Value::String(text));
        }
    }
    for t in &info.utf8_text {
        if let Ok(text) = t.get_text() {
            items.insert(t.keyword.clone(), Value::String(text));
        }
    }
    let parameters = match items.remove("parameters") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    Ok((parameters, items))
}

/// An infotext's fields: `Prompt`, `Negative prompt`, and each `Key: value` of the last line (quoted
/// values unquoted; `Size: WxH` also as `Size-1` / `Size-2`, as A1111 reports them).
pub fn parse_infotext(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    if text.trim().is_empty() {
        return out;
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    let mut settings = Vec::new();
    if let Some(last) = lines.last() {
        let pairs = key_values(last);
        // A1111's rule: the last line holds the settings when it has at least three `key: value` pairs.
        if pairs.len() >= 3 {
            settings = pairs;
            lines.pop();
        }
    }
    let (mut prompt, mut negative, mut in_negative) = (Vec::new(), Vec::new(), false);
    for line in lines {
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            negative.push(rest.trim_start());
        } else if in_negative {
            negative.push(line);
        } else {
            prompt.push(line);
        }
    }
    out.insert("Prompt".into(), Value::String(prompt.join("\n").trim().to_string()));
    out.insert("Negative prompt".into(), Value::String(negative.join("\n").trim().to_string()));
    for (k, v) in settings {
        if k == "Size" {
            if let Some((w, h)) = v.split_once('x') {
                out.insert("Size-1".into(), Value::String(w.to_string()));
                out.insert("Size-2".into(), Value::String(h.to_string()));
            }
        }
        out.insert(k, Value::String(v));
    }
    out
}

/// `Key: value, Key: "quoted, value", …` → pairs. Keys start with a letter or digit and hold letters,
/// digits, spaces, `-` and `/`.
fn key_values(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == ',') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != ':' && chars[i] != ',' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        let key_ok = key.chars().next().is_some_and(|c| c.is_alphanumeric())
            && key.chars().all(|c| c.is_alphanumeric() || " -/_".contains(c));
        if i >= chars.len() || chars[i] != ':' || !key_ok {
            // Not a `key:` here: skip to the next comma.
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let value = if i < chars.len() && chars[i] == '"' {
            let mut v = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                v.push(chars[i]);
                i += 1;
            }
            i += 1;
            v
        } else {
            let s = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            chars[s..i].iter().collect::<String>().trim().to_string()
        };
        out.push((key.trim().to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infotext_fields() {
        let t = "a fox, (snow:1.2)\nin a field\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 64x72, Model: sd15, Lora hashes: \"a: 1, b: 2\"";
        let p = parse_infotext(t);
        assert_eq!(p["Prompt"], "a fox, (snow:1.2)\nin a field");
        assert_eq!(p["Negative prompt"], "blurry");
        assert_eq!(p["Sampler"], "DPM++ 2M Karras");
        assert_eq!(p["Size-1"], "64");
        assert_eq!(p["Size-2"], "72");
        assert_eq!(p["Lora hashes"], "a: 1, b: 2");
        // A prompt alone: no settings line.
        let p = parse_infotext("just a prompt");
        assert_eq!(p["Prompt"], "just a prompt");
        assert!(!p.contains_key("Steps"));
    }
}
