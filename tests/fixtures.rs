//! Every case of the reference fixture folder (`WGSD_FIXTURES`, default `../shared/fixtures/tiny`), through
//! the same code as `wgsd verify`. Without the folder the test says it was skipped and why; it does not
//! count a skipped case as a pass (it prints SKIPPED and makes no assertion about them).

use std::path::PathBuf;

fn fixture_dir() -> Option<PathBuf> {
    let dir = wgsd::fixtures::dir();
    if dir.join("cases.json").exists() || dir.join("blocks.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no fixtures at {} (set {} to a diffusers fixture folder to run the reference cases)",
            dir.display(),
            wgsd::fixtures::ENV
        );
        None
    }
}

#[test]
fn tokenizer_cases_match_reference_ids() {
    let Some(dir) = fixture_dir() else { return };
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::tokenizer_cases(&fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "the fixture set has tokenizer cases but none ran");
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}
