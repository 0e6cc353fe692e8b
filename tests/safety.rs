//! The safety checker and the image processors against the reference fixtures (`WGSD_FIXTURES`), plus
//! error cases.


fn fixtures() -> Option<wgsd::fixtures::Fixtures> {
    let dir = wgsd::fixtures::dir();
    if !dir.join("cases.json").exists() {
        eprintln!("SKIPPED: no fixtures at {}", dir.display());
        return None;
    }
    Some(wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap())
}

#[test]
fn safety_and_depth_cases_pass() {
    let Some(fx) = fixtures() else { return };
    let gpu = wgsd::testing::test_gpu();
    let results = wgsd::verify_safety::safety_cases(&gpu, &fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}
