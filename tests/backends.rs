//! Every WGSL kernel through naga's validator and the back ends of wgpu 30's native backends:
//! SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL), with the settings those backends use
//! (see `tests/common/shaders.rs` for each value and where in wgpu-hal 30.0.2 it comes from).
//!
//! * Coverage: every `shaders/*.wgsl` file on disk and every entry point naga finds in it must be a
//!   pipeline the launchers create (`ops::catalogue::shader_pipelines`, built from the launchers'
//!   own kernel constants), so a new shader or entry point without a launcher entry fails here; and
//!   the launchers load the files as they are (no text is prepended or substituted).
//! * Every pipeline (entry point × the override constants its launcher sets: transposes and masks
//!   of the GEMMs, the tensor-core workgroup sizes) is specialised as wgpu does, re-validated,
//!   checked against WebGPU's default limits, then written by each back end at every language
//!   version / shader model the backend can pick, failing on any error.
//! * Metal and DX12 are never run (no such machine in CI): this translation is what is checked of
//!   them. Vulkan (lavapipe) and GL (llvmpipe through EGL) also run the kernels (scripts/test.sh).
//! * The tensor-core kernels (`gemm_coop.wgsl`: f16, subgroups, cooperative matrices) are written
//!   only where `select_tensor_core_kernel` can pick them: Vulkan (SPIR-V 1.3+, as SUBGROUP needs
//!   Vulkan 1.1+) and Metal (MSL 2.3+, where wgpu offers cooperative matrices). DX12 is refused by
//!   the selection because naga 30's HLSL writer cannot write them: it returns
//!   `Unimplemented("write_value_type CooperativeMatrix …")` for the matrix types, and has
//!   `unimplemented!()` for cooperative stores (run under `catch_unwind`); the failure is required
//!   here, so a naga that fixes it is noticed. GL has no cooperative matrices. On both, precision
//!   f16-tc is refused when the device is opened and the f32 GEMM kernels (translated here) run:
//!   the last test checks that on the adapter in use (lavapipe, and llvmpipe under
//!   `WGPU_BACKEND=gl` in scripts/test.sh).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cht_train::gpu::ops::catalogue::{ShaderPipeline, shader_pipelines};
use cht_train::gpu::ops::gemm::select_tensor_core_kernel;
use common::shaders::{
    self, GLSL_VERSIONS, HLSL_SHADER_MODELS, Layout, MSL_VERSIONS, SPIRV_VERSIONS,
};
use naga::valid::Capabilities;

/// `shaders/*.wgsl` on disk: file stem → text.
fn shaders_on_disk() -> BTreeMap<String, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            out.insert(stem, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The naga capabilities a pipeline's device features give (what wgpu's validator gets).
fn capabilities(features: wgpu::Features) -> Capabilities {
    let mut caps = Capabilities::empty();
    if features.contains(wgpu::Features::SHADER_F16) {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    if features.contains(wgpu::Features::SUBGROUP) {
        caps |= Capabilities::SUBGROUP;
    }
    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        caps |= Capabilities::COOPERATIVE_MATRIX;
    }
    caps
}

/// Whether the launcher can create `p` on `backend`: kernels without features everywhere; the
/// tensor-core kernels only where `select_tensor_core_kernel` accepts the most capable adapter
/// (every feature, 16×16 and 8×8 f16 configurations, subgroups of 32).
fn selectable(p: &ShaderPipeline, backend: wgpu::Backend) -> Result<(), String> {
    if p.features.is_empty() {
        return Ok(());
    }
    use wgpu::CooperativeScalarType::{F16, F32};
    let configs: Vec<wgpu::CooperativeMatrixProperties> = [16, 8]
        .into_iter()
        .flat_map(|size| {
            [F16, F32].map(|cr| wgpu::CooperativeMatrixProperties {
                m_size: size,
                n_size: size,
                k_size: size,
                ab_type: F16,
                cr_type: cr,
                saturating_accumulation: false,
            })
        })
        .collect();
    select_tensor_core_kernel(backend, p.features, &configs, 32).map(|_| ())
}

#[test]
fn every_entry_point_of_every_shader_is_a_launcher_pipeline() {
    let disk = shaders_on_disk();
    let pipelines = shader_pipelines();
    // File stem → entry points the launchers create; module cache key → file.
    let mut launched: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut file_of_family: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &pipelines {
        // The launchers compose nothing: the module wgpu gets is one file, as it is on disk.
        let file = disk
            .iter()
            .find(|(_, text)| text.as_str() == p.source)
            .map(|(stem, _)| stem.as_str())
            .unwrap_or_else(|| panic!("{}/{}: source is no file of shaders/", p.family, p.entry));
        launched.entry(file).or_default().insert(p.entry);
        // wgpu modules are cached by family: one family, one file.
        let cached = *file_of_family.entry(p.family).or_insert(file);
        assert_eq!(cached, file, "family {} loads two files", p.family);
    }
    for (file, text) in &disk {
        let (module, _) = shaders::parse(file, text, capabilities(wgpu::Features::all()));
        let on_disk: BTreeSet<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(
            !on_disk.is_empty(),
            "shaders/{file}.wgsl has no entry point"
        );
        let covered = launched.get(file.as_str()).cloned().unwrap_or_default();
        assert_eq!(
            on_disk, covered,
            "shaders/{file}.wgsl: entry points in the file (left) vs pipelines of the launchers \
             (right); list a new kernel in cht-gpu's ops::catalogue::shader_pipelines"
        );
    }
    assert_eq!(
        launched.len(),
        disk.len(),
        "every file has launcher pipelines"
    );
    let unique: BTreeSet<&str> = file_of_family.values().copied().collect();
    assert_eq!(unique.len(), file_of_family.len(), "one family per file");
}

/// Translations per back end, for the summary and the final checks.
#[derive(Default)]
struct Tally {
    /// Back end → (pipelines written, translations written).
    written: BTreeMap<&'static str, (usize, usize)>,
    /// Back end → pipelines the launcher never creates there, with the reason.
    selected_away: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Tally {
    fn add(&mut self, backend: &'static str, translations: usize) {
        let e = self.written.entry(backend).or_default();
        e.0 += 1;
        e.1 += translations;
    }
}

#[test]
fn every_pipeline_validates_and_translates_for_vulkan_metal_dx12_and_gl() {
    let pipelines = shader_pipelines();
    let mut modules = BTreeMap::new();
    let mut tally = Tally::default();
    let mut entries: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut gap_checked = BTreeSet::new();
    for p in &pipelines {
        let caps = capabilities(p.features);
        let (module, info) = modules
            .entry(p.family)
            .or_insert_with(|| shaders::parse(p.family, p.source, caps));
        let what = format!("{}/{} {:?}", p.family, p.entry, p.constants);
        let (m, i) = shaders::process(&what, module, info, p.entry, &p.constants, caps);
        let mi = (&m, &i);
        let layout = Layout {
            read_only: &p.read_only,
        };
        entries.entry(p.family).or_default().insert(p.entry);

        // Vulkan: SPIR-V.
        match selectable(p, wgpu::Backend::Vulkan) {
            Ok(()) => {
                // SUBGROUP needs Vulkan 1.1+ (SPIR-V 1.3+) in wgpu-hal's vulkan/adapter.rs.
                let versions: Vec<_> = SPIRV_VERSIONS
                    .into_iter()
                    .filter(|&v| p.features.is_empty() || v >= (1, 3))
                    .collect();
                for &v in &versions {
                    shaders::spirv(&what, mi, p.entry, v, p.runtime_checks).unwrap();
                }
                tally.add("SPIR-V", versions.len());
            }
            Err(why) => panic!("{what}: not selectable on Vulkan: {why}"),
        }

        // Metal: MSL.
        match selectable(p, wgpu::Backend::Metal) {
            Ok(()) => {
                // Cooperative matrices need MSL 2.3+ (wgpu-hal metal/adapter.rs).
                let versions: Vec<_> = MSL_VERSIONS
                    .into_iter()
                    .filter(|&v| p.features.is_empty() || v >= (2, 3))
                    .collect();
                for &v in &versions {
                    shaders::msl(&what, mi, p.entry, &layout, v, p.runtime_checks).unwrap();
                }
                tally.add("MSL", versions.len());
            }
            Err(why) => panic!("{what}: not selectable on Metal: {why}"),
        }

        // DX12: HLSL.
        match selectable(p, wgpu::Backend::Dx12) {
            Ok(()) => {
                for sm in HLSL_SHADER_MODELS {
                    shaders::hlsl(&what, mi, p.entry, &layout, sm, p.runtime_checks).unwrap();
                }
                tally.add("HLSL", HLSL_SHADER_MODELS.len());
            }
            Err(why) => {
                // The documented gap: naga 30's HLSL writer cannot write the kernel. It must
                // still fail (a panic from `unimplemented!()` or an error), or the refusal in
                // `select_tensor_core_kernel` is stale.
                assert!(why.contains("HLSL"), "{what}: {why}");
                // Once per entry point (each panic prints naga's message).
                if gap_checked.insert(p.entry) {
                    let sm = naga::back::hlsl::ShaderModel::V6_9;
                    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        shaders::hlsl(&what, mi, p.entry, &layout, sm, p.runtime_checks)
                    }));
                    match written {
                        Ok(Ok(_)) => {
                            panic!("{what}: naga now writes HLSL for it: revisit the DX12 refusal")
                        }
                        Ok(Err(e)) => eprintln!("HLSL gap, as expected: {e}"),
                        Err(_) => eprintln!("HLSL gap, as expected: {}: naga panicked", p.entry),
                    }
                }
                tally
                    .selected_away
                    .entry("HLSL")
                    .or_default()
                    .insert(format!("{}/{}: {why}", p.family, p.entry));
            }
        }

        // GL: GLSL.
        match selectable(p, wgpu::Backend::Gl) {
            Ok(()) => {
                for v in GLSL_VERSIONS {
                    shaders::glsl(&what, mi, p.entry, &layout, v).unwrap();
                }
                tally.add("GLSL", GLSL_VERSIONS.len());
            }
            Err(why) => {
                // GLSL has no cooperative matrices: nothing to write.
                assert!(why.contains("Gl"), "{what}: {why}");
                tally
                    .selected_away
                    .entry("GLSL")
                    .or_default()
                    .insert(format!("{}/{}: {why}", p.family, p.entry));
            }
        }
    }
    for (backend, (n, t)) in &tally.written {
        eprintln!("{backend}: {n} pipelines written, {t} translations");
    }
    for (backend, why) in &tally.selected_away {
        eprintln!("{backend}: selected away: {why:#?}");
    }
    let total = pipelines.len();
    let coop = pipelines.iter().filter(|p| !p.features.is_empty()).count();
    assert_eq!(coop, 96, "tensor-core pipelines");
    assert_eq!(tally.written["SPIR-V"].0, total);
    assert_eq!(tally.written["MSL"].0, total);
    assert_eq!(tally.written["HLSL"].0, total - coop);
    assert_eq!(tally.written["GLSL"].0, total - coop);
    // Every file and entry point went through (the other test ties them to the disk).
    assert_eq!(
        entries.len(),
        shaders_on_disk().len(),
        "shader files translated"
    );
    let expected: BTreeSet<&str> =
        BTreeSet::from(["gemm_coop16", "gemm_coop16_h", "gemm_coop8", "gemm_coop8_h"]);
    for backend in ["HLSL", "GLSL"] {
        let away: BTreeSet<&str> = tally.selected_away[backend]
            .iter()
            .map(|s| {
                s.split(':')
                    .next()
                    .unwrap()
                    .trim_start_matches("gemm_coop/")
            })
            .collect();
        assert_eq!(away, expected, "{backend}: entries selected away");
    }
}

#[test]
fn the_adapter_in_use_refuses_the_kernels_its_backend_cannot_express_and_runs_the_f32_gemm() {
    // Run on every driver of scripts/test.sh (lavapipe, then GL): asking for tensor cores where
    // the selection refuses them (GL, DX12, adapters without cooperative matrices) is an error
    // naming the reason when the device is opened, and the default device's GEMM (`Auto`) runs an
    // f32 kernel that matches the twin.
    use cht_train::gpu::{
        BackendChoice, Device, DeviceInfo, DeviceOptions, Gemm, GemmKernel, Precision, Transpose,
    };
    let Some(g) = common::gpu() else {
        return;
    };
    let DeviceInfo::Gpu(adapter) = g.info() else {
        panic!("gpu() gave a CPU device");
    };
    let options = DeviceOptions::from_env()
        .unwrap()
        .with_backend(BackendChoice::Gpu)
        .with_precision(Precision::F16TensorCores);
    match (Device::open_blocking(&options), &adapter.tensor_cores) {
        (Ok(d), Ok(kernel)) => {
            assert!(
                matches!(adapter.backend.as_str(), "Vulkan" | "Metal"),
                "{}",
                adapter.backend
            );
            assert_eq!(d.tensor_core_kernel(), Some(*kernel));
        }
        (Err(e), Err(why)) => {
            let e = e.to_string();
            assert!(e.contains("f16-tc") && e.contains(why.as_str()), "{e}");
            eprintln!(
                "{}: tensor cores refused: {why}",
                adapter.backend_in_words()
            );
        }
        (opened, selection) => panic!(
            "opening for f16-tc ({:?}) disagrees with the selection ({selection:?})",
            opened.map(|_| ())
        ),
    }
    assert_eq!(g.tensor_core_kernel(), None, "default precision is f32");
    let (m, n, k) = (67, 45, 33);
    let cpu = common::cpu();
    let mut results = Vec::new();
    for d in [g, &cpu] {
        let a = d.tensor_f32("a", m, k, &common::randn(m * k, 1)).unwrap();
        let b = d.tensor_f32("b", k, n, &common::randn(k * n, 2)).unwrap();
        let c = d.tensor_f32("c", m, n, &common::poison(m * n)).unwrap();
        let mut cfg = Gemm::new(Transpose::No, Transpose::No);
        cfg.kernel = GemmKernel::Auto;
        d.gemm(&cfg, &a, &b, &c).unwrap();
        results.push(d.read_f32(&c).unwrap());
    }
    common::assert_close("Auto GEMM vs twin", &results[0], &results[1], 1e-5);
}
