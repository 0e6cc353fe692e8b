//! Every WGSL file of the kernel library parses, validates, and translates to SPIR-V (Vulkan), MSL (Metal)
//! and HLSL (DX12) with naga — the proof that the kernels build for every backend. Needs no GPU.

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("shaders/{name}.wgsl does not parse:\n{}", e.emit_to_string(src)));
    // SHADER_FLOAT16_IN_FLOAT32 (`unpack2x16float`, the f16-weight variants) is wgpu's downlevel flag
    // SHADER_F16_IN_F32, which every Vulkan, Metal and DX12 adapter has.
    let caps = Capabilities::default() | Capabilities::SHADER_FLOAT16 | Capabilities::SUBGROUP | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("shaders/{name}.wgsl does not validate:\n{}", e.emit_to_string(src)));
    (module, info)
}

#[test]
fn every_shader_validates_and_translates_to_spirv_msl_hlsl() {
    let shaders = wgsd::kernels::all_shaders();
    assert!(!shaders.is_empty());
    for s in shaders {
        let (module, info) = validate(s.name, s.source);
        assert!(!module.entry_points.is_empty(), "shaders/{}.wgsl has no entry point", s.name);
        // The backends take no `override`: fix them as pipeline creation does (the defaults here; a fixed
        // activation in `fixed_activation_translates`).
        let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl: overrides: {e}", s.name));
        let (module, info) = (module.into_owned(), info.into_owned());

        let spv = naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl → SPIR-V: {e}", s.name));
        assert_eq!(spv[0], 0x0723_0203, "SPIR-V magic number");

        let msl_opts = naga::back::msl::Options { fake_missing_bindings: true, ..Default::default() };
        let (msl, _) = naga::back::msl::write_string(&module, &info, &msl_opts, &Default::default())
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl → MSL: {e}", s.name));
        assert!(msl.contains("kernel"), "MSL output of {} has no kernel function", s.name);

        let hlsl_opts = naga::back::hlsl::Options { fake_missing_bindings: true, ..Default::default() };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &Default::default())
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl → HLSL: {e}", s.name));
        assert!(hlsl.contains("[numthreads("), "HLSL output of {} has no compute entry point", s.name);
        println!("{}: {} entry points, SPIR-V {} words, MSL {} B, HLSL {} B", s.name, module.entry_points.len(), spv.len(), msl.len(), hlsl.len());
    }
}

/// Every shader with the activation library takes a fixed activation (`ACT`, see shaders/activations.wgsl)
/// for each code, as its pipelines are created with one, and still translates.
#[test]
fn fixed_activation_translates() {
    let mut with_act = 0;
    for s in wgsd::kernels::all_shaders() {
        if !s.source.contains("fn activate(") {
            continue;
        }
        with_act += 1;
        let (module, info) = validate(s.name, s.source);
        for act in 0..=6 {
            let constants = naga::back::PipelineConstants::from_iter([("ACT".to_string(), f64::from(act))]);
            let (m, i) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
                .unwrap_or_else(|e| panic!("shaders/{}.wgsl with ACT = {act}: {e}", s.name));
            naga::back::spv::write_vec(&m, &i, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("shaders/{}.wgsl with ACT = {act} → SPIR-V: {e}", s.name));
        }
    }
    assert!(with_act >= 4, "matmul (both), unary and norm apply activations: found {with_act} shaders");
}

/// Every `.wgsl` file in shaders/ is registered, so none escapes the test above.
#[test]
fn every_shader_file_is_registered() {
    let registered: Vec<&str> = wgsd::kernels::all_shaders().iter().map(|s| s.name).collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if stem == "activations" {
            continue; // a function library prepended to other shaders, validated with them
        }
        assert!(registered.contains(&stem.as_str()), "shaders/{stem}.wgsl is not in kernels::all_shaders()");
    }
}

/// A broken shader is reported with its name, so the test above can fail.
#[test]
#[should_panic(expected = "shaders/broken.wgsl does not")]
fn a_broken_shader_is_caught() {
    validate("broken", "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }");
}

/// shaders/matmul_subgroup.wgsl is what its generator (tools/gen_matmul_subgroup.py) writes: an edit to
/// either alone fails here. Needs python3 (no packages); without it the check is reported as not done.
#[test]
fn matmul_subgroup_shader_matches_its_generator() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::env::temp_dir().join(format!("wgsd-matmul-subgroup-{}.wgsl", std::process::id()));
    let ran = std::process::Command::new("python3").arg(format!("{root}/tools/gen_matmul_subgroup.py")).arg(&out).status();
    match ran {
        Ok(status) => assert!(status.success(), "tools/gen_matmul_subgroup.py failed: {status}"),
        Err(e) => {
            println!("SKIPPED: matmul_subgroup_shader_matches_its_generator needs python3 ({e}); the generator was NOT compared");
            eprintln!("SKIPPED: matmul_subgroup_shader_matches_its_generator needs python3 ({e}); the generator was NOT compared");
            return;
        }
    }
    let generated = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read_to_string(format!("{root}/shaders/matmul_subgroup.wgsl")).unwrap();
    assert!(
        generated == committed,
        "shaders/matmul_subgroup.wgsl differs from what tools/gen_matmul_subgroup.py writes: edit the generator and run `python3 tools/gen_matmul_subgroup.py`"
    );
}
