//! The dense GEMM kernels against their CPU twin.
//!
//! * Every f32 kernel (`Registers`, `Tiled`, `Large` with its scalar and vec4 entry points) on a
//!   real driver (lavapipe in CI) for all four transpose combinations, every epilogue (bias, ReLU,
//!   accumulate) and both mask kinds, at odd sizes and edge tiles (m, n, k from {1, 3, 63, 64, 65,
//!   127, 129, 200}, and k = 0). Outputs start as NaN so a kernel that writes nothing fails.
//! * The tensor-core shaders (`shaders/gemm_coop.wgsl`), which lavapipe cannot run: parsed and
//!   validated by naga with the cooperative-matrix, f16 and subgroup capabilities for every entry
//!   point and override combination the launcher creates; the SPIR-V and MSL must hold the
//!   cooperative products. (tests/backends.rs translates every kernel for every backend.) HLSL is
//!   not written: naga 30's HLSL writer has `unimplemented!()` for cooperative stores, so the
//!   launcher never selects the kernel on DX12 (checked below and in tests/backends.rs).
//! * The tensor-core kernel against the twin on adapters that offer cooperative matrices (skipped,
//!   with the reason printed, elsewhere).

mod common;

use std::collections::BTreeMap;

use cht_train::gpu::ops::gemm::{
    TENSOR_CORE_WGSL, large_uses_vec4, select_tensor_core_kernel, tensor_core_pipelines,
};
use cht_train::gpu::{
    Activation, BackendChoice, Device, DeviceOptions, Gemm, GemmKernel, MaskOn, Precision,
    Transpose,
};
use common::{cpu, gpu, poison, randn, shaders};

/// Unit roundoff of f32.
const U32: f32 = 1.0 / (1u64 << 24) as f32;

/// (m, n, k): every size of {1, 3, 63, 64, 65, 127, 129, 200} in every role, k = 0, interior
/// 128×64 tiles with full 16-wide k-slices and a partial last slice (k = 200, 65, 127, 129),
/// tiles cut by the edges in rows and columns, and shapes where the vec4 entry applies.
const SHAPES: [(usize, usize, usize); 13] = [
    (1, 1, 1),
    (3, 200, 65),
    (63, 129, 3),
    (64, 64, 64),
    (65, 63, 127),
    (127, 65, 129),
    (129, 127, 63),
    (200, 3, 200),
    (200, 64, 64),
    (64, 200, 200),
    (129, 129, 200),
    (200, 200, 0),
    (1, 64, 0),
];

const TRANSPOSES: [(Transpose, Transpose); 4] = [
    (Transpose::No, Transpose::No),
    (Transpose::Yes, Transpose::No),
    (Transpose::No, Transpose::Yes),
    (Transpose::Yes, Transpose::Yes),
];

/// The epilogues and masks exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Epi {
    Plain,
    BiasRelu,
    MaskA,
    MaskCAccumulate,
    BiasAccumulate,
}

const EPIS: [Epi; 5] = [
    Epi::Plain,
    Epi::BiasRelu,
    Epi::MaskA,
    Epi::MaskCAccumulate,
    Epi::BiasAccumulate,
];

/// One product's operands, in storage layout.
struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: Transpose,
    tb: Transpose,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
    mask_a: Vec<u32>,
    mask_c: Vec<u32>,
    c0: Vec<f32>,
    /// `Σ_l |op(A)[i,l]·op(B)[l,j]| + |bias[i]| + |C0[i,j]|` per entry (row-major): what bounds
    /// the rounding error of any evaluation order of entry (i, j).
    scales: Vec<f32>,
}

impl Case {
    fn new(m: usize, n: usize, k: usize, ta: Transpose, tb: Transpose, seed: u32) -> Case {
        let bits = |v: Vec<f32>| v.iter().map(|x| u32::from(*x > 0.0)).collect();
        let mut case = Case {
            m,
            n,
            k,
            ta,
            tb,
            a: randn(m * k, seed),
            b: randn(k * n, seed + 1),
            bias: randn(m, seed + 2),
            mask_a: bits(randn(m * k, seed + 3)),
            mask_c: bits(randn(m * n, seed + 4)),
            c0: randn(m * n, seed + 5),
            scales: Vec::new(),
        };
        case.update_scales();
        case
    }

    fn update_scales(&mut self) {
        let mut scales = vec![0f32; self.m * self.n];
        for i in 0..self.m {
            for j in 0..self.n {
                let mut s = 0f32;
                for l in 0..self.k {
                    let ai = match self.ta {
                        Transpose::No => i * self.k + l,
                        Transpose::Yes => l * self.m + i,
                    };
                    let bi = match self.tb {
                        Transpose::No => l * self.n + j,
                        Transpose::Yes => j * self.k + l,
                    };
                    s += (self.a[ai] * self.b[bi]).abs();
                }
                scales[i * self.n + j] = s + self.bias[i].abs() + self.c0[i * self.n + j].abs();
            }
        }
        self.scales = scales;
    }

    fn a_shape(&self) -> (usize, usize) {
        match self.ta {
            Transpose::No => (self.m, self.k),
            Transpose::Yes => (self.k, self.m),
        }
    }

    fn b_shape(&self) -> (usize, usize) {
        match self.tb {
            Transpose::No => (self.k, self.n),
            Transpose::Yes => (self.n, self.k),
        }
    }
}

/// The tensors of a case on one device.
struct Bound {
    a: cht_train::gpu::Tensor,
    b: cht_train::gpu::Tensor,
    bias: cht_train::gpu::Tensor,
    mask_a: cht_train::gpu::Tensor,
    mask_c: cht_train::gpu::Tensor,
    c: cht_train::gpu::Tensor,
}

fn bind(d: &Device, case: &Case) -> Bound {
    let (ar, ac) = case.a_shape();
    let (br, bc) = case.b_shape();
    Bound {
        a: d.tensor_f32("gemm.a", ar, ac, &case.a).unwrap(),
        b: d.tensor_f32("gemm.b", br, bc, &case.b).unwrap(),
        bias: d.tensor_f32("gemm.bias", case.m, 1, &case.bias).unwrap(),
        mask_a: d.tensor_u32("gemm.mask_a", ar, ac, &case.mask_a).unwrap(),
        mask_c: d
            .tensor_u32("gemm.mask_c", case.m, case.n, &case.mask_c)
            .unwrap(),
        c: d.tensor_f32("gemm.c", case.m, case.n, &poison(case.m * case.n))
            .unwrap(),
    }
}

/// Runs one product on `d` (C poisoned with NaN first, or holding C0 when accumulating).
fn run(d: &Device, case: &Case, t: &Bound, epi: Epi, kernel: GemmKernel) -> Vec<f32> {
    let accumulate = matches!(epi, Epi::MaskCAccumulate | Epi::BiasAccumulate);
    let init = if accumulate {
        case.c0.clone()
    } else {
        poison(case.m * case.n)
    };
    d.write_f32(&t.c, &init).unwrap();
    let mut cfg = Gemm::new(case.ta, case.tb);
    cfg.kernel = kernel;
    cfg.accumulate = accumulate;
    match epi {
        Epi::Plain => {}
        Epi::BiasRelu => {
            cfg.bias = Some(&t.bias);
            cfg.act = Activation::Relu;
        }
        Epi::MaskA => cfg.mask = MaskOn::A(&t.mask_a),
        Epi::MaskCAccumulate => cfg.mask = MaskOn::C(&t.mask_c),
        Epi::BiasAccumulate => cfg.bias = Some(&t.bias),
    }
    d.gemm(&cfg, &t.a, &t.b, &t.c).unwrap();
    d.read_f32(&t.c).unwrap()
}

/// Asserts `|got − want| ≤ tol(i, j)` for every entry, NaN included.
fn check(what: &str, case: &Case, got: &[f32], want: &[f32], tol: impl Fn(usize, usize) -> f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for i in 0..case.m {
        for j in 0..case.n {
            let (g, w) = (got[i * case.n + j], want[i * case.n + j]);
            let t = tol(i, j);
            assert!(
                (g - w).abs() <= t,
                "{what}: C[{i},{j}] = {g}, twin {w} (tolerance {t:e})"
            );
        }
    }
}

#[test]
fn f32_kernels_match_twin_for_every_transpose_epilogue_and_mask() {
    let Some(g) = gpu() else {
        return;
    };
    let cpu = cpu();
    // (kernel, vec4 entry used) → cases run, to prove every entry point was exercised.
    let mut ran: BTreeMap<(String, bool), usize> = BTreeMap::new();
    for (seed, &(m, n, k)) in SHAPES.iter().enumerate() {
        for &(ta, tb) in &TRANSPOSES {
            let case = Case::new(m, n, k, ta, tb, 10 * seed as u32 + 1);
            let (on_gpu, on_cpu) = (bind(g, &case), bind(&cpu, &case));
            for epi in EPIS {
                let want = run(&cpu, &case, &on_cpu, epi, GemmKernel::Auto);
                for kernel in [GemmKernel::Registers, GemmKernel::Tiled, GemmKernel::Large] {
                    let got = run(g, &case, &on_gpu, epi, kernel);
                    let v4 = kernel == GemmKernel::Large && large_uses_vec4(m, n, k, ta, tb);
                    let what = format!("{kernel:?} (vec4 {v4}) {m}x{n}x{k} {ta:?}/{tb:?} {epi:?}");
                    // Both sum in k order; they may differ only by FMA contraction: at most
                    // 2·(k + 2)·u·scale (k products and sums, bias, accumulate).
                    check(&what, &case, &got, &want, |i, j| {
                        2.0 * (k as f32 + 2.0) * U32 * case.scales[i * n + j]
                    });
                    *ran.entry((format!("{kernel:?}"), v4)).or_default() += 1;
                }
            }
        }
    }
    eprintln!("cases per kernel (vec4 entry): {ran:?}");
    for key in [
        ("Registers", false),
        ("Tiled", false),
        ("Large", false),
        ("Large", true),
    ] {
        let runs = ran.get(&(key.0.to_owned(), key.1)).copied().unwrap_or(0);
        assert!(runs >= 40, "{key:?} ran only {runs} cases");
    }
}

#[test]
fn f32_kernels_are_bit_identical_to_twin_with_zero_one_operands() {
    // With B (or A) in {0, 1} every product is exact, so summing in k order gives the same bits
    // with or without fused multiply-adds: other code relies on that across kernels and backends.
    let Some(g) = gpu() else {
        return;
    };
    let cpu = cpu();
    for &(m, n, k) in &[(129, 65, 200), (63, 200, 64), (200, 64, 129)] {
        for &(ta, tb) in &TRANSPOSES {
            for zero_one_a in [false, true] {
                let mut case = Case::new(m, n, k, ta, tb, 7);
                let bits = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = f32::from(*x > 0.3));
                if zero_one_a {
                    bits(&mut case.a);
                } else {
                    bits(&mut case.b);
                }
                let (on_gpu, on_cpu) = (bind(g, &case), bind(&cpu, &case));
                for epi in [Epi::Plain, Epi::BiasRelu, Epi::MaskA] {
                    let want = run(&cpu, &case, &on_cpu, epi, GemmKernel::Auto);
                    for kernel in [GemmKernel::Registers, GemmKernel::Tiled, GemmKernel::Large] {
                        let got = run(g, &case, &on_gpu, epi, kernel);
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{kernel:?} {m}x{n}x{k} {ta:?}/{tb:?} {epi:?} 0/1 A {zero_one_a}: not \
                             bit-identical to the twin"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn tensor_core_kernel_needs_a_device_opened_for_it() {
    // On a device opened with the default precision, asking for the tensor-core kernel is an
    // error (whatever the adapter), never a silent fallback.
    let Some(g) = gpu() else {
        return;
    };
    if g.tensor_core_kernel().is_some() {
        return; // CHT_PRECISION=f16-tc in the environment
    }
    let case = Case::new(3, 5, 7, Transpose::No, Transpose::No, 1);
    let t = bind(g, &case);
    let cfg = Gemm {
        kernel: GemmKernel::TensorCores,
        ..Gemm::new(Transpose::No, Transpose::No)
    };
    let err = g.gemm(&cfg, &t.a, &t.b, &t.c).unwrap_err().to_string();
    assert!(err.contains("f16-tc"), "{err}");
}

#[test]
fn precision_option_parses_and_cpu_backend_refuses_tensor_cores() {
    assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
    assert_eq!(
        "F16-TC".parse::<Precision>().unwrap(),
        Precision::F16TensorCores
    );
    assert!("f16".parse::<Precision>().is_err());
    assert_eq!(DeviceOptions::default().precision, Precision::F32);
    let options = DeviceOptions::default()
        .with_backend(BackendChoice::Cpu)
        .with_precision(Precision::F16TensorCores);
    let err = Device::open_blocking(&options).unwrap_err().to_string();
    assert!(err.contains("f16-tc") && err.contains("CPU"), "{err}");
}

fn config(
    size: u32,
    ab: wgpu::CooperativeScalarType,
    cr: wgpu::CooperativeScalarType,
) -> wgpu::CooperativeMatrixProperties {
    wgpu::CooperativeMatrixProperties {
        m_size: size,
        n_size: size,
        k_size: size,
        ab_type: ab,
        cr_type: cr,
        saturating_accumulation: false,
    }
}

#[test]
fn tensor_core_selection_follows_the_adapter_and_refuses_dx12() {
    use wgpu::CooperativeScalarType::{F16, F32};
    let all = wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    let nvidia = [config(16, F16, F16), config(16, F16, F32)];
    let k = select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &nvidia, 32).unwrap();
    assert_eq!((k.entry(), k.workgroup, k.tile()), ("gemm_coop16", 128, 64));
    // A subgroup of up to 64 (AMD): 4 of them per workgroup.
    let k = select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &nvidia, 64).unwrap();
    assert_eq!(k.workgroup, 256);
    // Only f16 accumulators: products per k-slice summed in f32.
    let k = select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &nvidia[..1], 32).unwrap();
    assert_eq!(k.entry(), "gemm_coop16_h");
    // Apple (Metal offers 8×8 only).
    let apple = [
        config(8, F32, F32),
        config(8, F16, F16),
        config(8, F16, F32),
    ];
    let k = select_tensor_core_kernel(wgpu::Backend::Metal, all, &apple, 32).unwrap();
    assert_eq!((k.entry(), k.tile()), ("gemm_coop8", 32));
    // DX12 is refused whatever it offers: naga 30 cannot write cooperative stores in HLSL.
    let why = select_tensor_core_kernel(wgpu::Backend::Dx12, all, &nvidia, 32).unwrap_err();
    assert!(why.contains("DX12") && why.contains("HLSL"), "{why}");
    for backend in [wgpu::Backend::Gl, wgpu::Backend::BrowserWebGpu] {
        assert!(select_tensor_core_kernel(backend, all, &nvidia, 32).is_err());
    }
    // Missing features, subgroups too large for four per workgroup, no usable configuration.
    let why = select_tensor_core_kernel(
        wgpu::Backend::Vulkan,
        all - wgpu::Features::SUBGROUP,
        &nvidia,
        32,
    )
    .unwrap_err();
    assert!(why.contains("SUBGROUP"), "{why}");
    assert!(select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &nvidia, 128).is_err());
    let only_f32 = [config(8, F32, F32), config(16, F32, F32)];
    assert!(select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &only_f32, 32).is_err());
    assert!(select_tensor_core_kernel(wgpu::Backend::Vulkan, all, &[], 32).is_err());
}

#[test]
fn tensor_core_shaders_validate_and_translate_for_every_pipeline() {
    // Every pipeline of every kernel is validated and translated for every backend in
    // tests/backends.rs (with the shared helpers of tests/common/shaders.rs); this checks what
    // the tensor-core translations must contain, and that the module needs its capabilities.
    use naga::valid::Capabilities as Caps;
    let caps = Caps::COOPERATIVE_MATRIX | Caps::SHADER_FLOAT16 | Caps::SUBGROUP;
    let (module, info) = shaders::parse("gemm_coop.wgsl", TENSOR_CORE_WGSL, caps);
    // Without the capabilities (a device opened with precision f32) the module is rejected, which
    // is why it is only created on devices opened for tensor cores.
    assert!(
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), Caps::SUBGROUP)
            .validate(&module)
            .is_err()
    );
    let pipelines = tensor_core_pipelines();
    assert_eq!(
        pipelines.len(),
        4 * 2 * 4 * 3,
        "entries × workgroups × transposes × masks"
    );
    let mut entries = std::collections::BTreeSet::new();
    let layout = shaders::Layout {
        read_only: &[true, true, true, true, false],
    };
    for (entry, constants) in &pipelines {
        let what = format!("{entry} {constants:?}");
        let (m, i) = shaders::process(&what, &module, &info, entry, constants, caps);
        // SPIR-V (Vulkan), with and without the runtime bounds checks wgpu may add.
        for checked in [false, true] {
            let words = shaders::spirv(&what, (&m, &i), entry, (1, 6), checked).unwrap();
            // OpCapability CooperativeMatrixKHR (6022) and OpCooperativeMatrixMulAddKHR (4459).
            let has = |op: u32, operand: Option<u32>| {
                words
                    .windows(2)
                    .any(|w| w[0] & 0xffff == op && operand.is_none_or(|o| w[1] == o))
            };
            assert!(
                has(17, Some(6022)),
                "{what}: no CooperativeMatrixKHR capability"
            );
            assert!(has(4459, None), "{what}: no OpCooperativeMatrixMulAddKHR");
        }
        // MSL (Metal): simdgroup matrices.
        let msl = shaders::msl(&what, (&m, &i), entry, &layout, (2, 4), false).unwrap();
        assert!(
            msl.contains("simdgroup_multiply_accumulate"),
            "{what}: MSL without MMA"
        );
        entries.insert(*entry);
    }
    assert_eq!(
        entries.into_iter().collect::<Vec<_>>(),
        ["gemm_coop16", "gemm_coop16_h", "gemm_coop8", "gemm_coop8_h"]
    );
}

#[test]
fn tensor_core_kernel_matches_twin_where_the_adapter_has_cooperative_matrices() {
    // Honours CHT_REQUIRE_GPU through `gpu()`; an adapter without cooperative matrices (lavapipe)
    // skips the comparison and says why.
    if gpu().is_none() {
        return;
    }
    let options = DeviceOptions::from_env()
        .unwrap()
        .with_backend(BackendChoice::Gpu)
        .with_precision(Precision::F16TensorCores);
    let d = match Device::open_blocking(&options) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tensor-core GEMM comparison skipped: {e}");
            return;
        }
    };
    let kernel = d.tensor_core_kernel().expect("opened for tensor cores");
    eprintln!("tensor-core GEMM on {}: {kernel}", d.name());
    let cpu = cpu();
    for (seed, &(m, n, k)) in SHAPES.iter().enumerate() {
        for &(ta, tb) in &TRANSPOSES {
            let case = Case::new(m, n, k, ta, tb, 10 * seed as u32 + 3);
            let (on_gpu, on_cpu) = (bind(&d, &case), bind(&cpu, &case));
            for epi in EPIS {
                let want = run(&cpu, &case, &on_cpu, epi, GemmKernel::Auto);
                // Auto follows the device's precision.
                for choice in [GemmKernel::TensorCores, GemmKernel::Auto] {
                    let got = run(&d, &case, &on_gpu, epi, choice);
                    let what = format!("{kernel} {choice:?} {m}x{n}x{k} {ta:?}/{tb:?} {epi:?}");
                    // f16 operands: relative 1e-2, scaled by √k.
                    let rel = 1e-2 * (k.max(1) as f32).sqrt();
                    check(&what, &case, &got, &want, |i, j| {
                        rel * (1.0 + want[i * n + j].abs())
                    });
                }
            }
        }
    }
}

// ---- the tensor-core kernels' logic, run on lavapipe with emulated cooperative matrices --------
//
// Lavapipe has no cooperative matrices, but it has f16 and subgroups. The test below rewrites
// `gemm_coop.wgsl` so that every cooperative matrix becomes a private S×S array held whole by each
// invocation: `coopLoadT` reads the row-major tile, `coopMultiplyAdd` multiplies in f32 (products
// of f16 values, exact), `coopStoreT` writes the tile (converted to the array's element type); to
// save time only lane 0 of each quadrant owner does these (its stores are the ones that count).
// The staging, transposes, masks, edge tiles, quadrant ownership (with lavapipe's subgroups of 8
// there are 16 subgroups: the duplicate path runs), epilogues, direct stores and the f16-only
// kernels' f32 accumulation then run for real and are compared with the twin. What this cannot check is a
// driver's own cooperative-matrix implementation (nor its layout convention: row-major for
// coopLoadT / coopStoreT, as naga 30 documents and writes it).
//
// Only the 8×8 kernels run: the 16×16 ones come from the same WGSL text with other sizes (see the
// file), and their emulation costs lavapipe minutes of compilation and 8× the loop iterations.

/// `TENSOR_CORE_WGSL` with the cooperative matrices emulated (see above).
fn emulated_tensor_core_wgsl() -> String {
    let source = TENSOR_CORE_WGSL.replace("enable wgpu_cooperative_matrix;\n", "");
    // Element type of every array the kernels load from or store to.
    let mut elem = BTreeMap::new();
    for line in source.lines() {
        if let Some(rest) = line.split("var<").nth(1)
            && let Some((name, ty)) = rest.split_once("> ").and_then(|(_, r)| r.split_once(": "))
            && let Some(t) = ty.strip_prefix("array<")
        {
            elem.insert(name.trim().to_owned(), t[..3].to_owned());
        }
    }
    let mut out = String::new();
    let mut used = std::collections::BTreeSet::new();
    let mut size = 16;
    let mut pointers: BTreeMap<String, String> = BTreeMap::new();
    let mut entry_open = false;
    for line in source.lines() {
        if let Some(s) = line.strip_prefix("// ---- S = ") {
            size = s.split(' ').next().unwrap().parse().unwrap();
        }
        let mut l = line.to_owned();
        // let d = &NAME[INDEX];  →  let d = INDEX;  (remembering d → NAME)
        if let Some((lhs, rhs)) = l.split_once(" = &")
            && let Some(let_name) = lhs.trim().strip_prefix("let ")
            && let Some((name, index)) = rhs.split_once('[')
        {
            pointers.insert(let_name.to_owned(), name.to_owned());
            l = format!("{lhs} = {};", index.trim_end_matches("];"));
        }
        // coopLoadT<coop_matSxS<T, R>>(&NAME[INDEX], STRIDE)  →  emu_load_NAME(INDEX, STRIDE)
        while let Some(at) = l.find("coopLoadT<") {
            let args = at + l[at..].find(">>(&").unwrap() + 4;
            let (name, rest) = l[args..].split_once('[').unwrap();
            let (index, rest) = rest.split_once("], ").unwrap();
            let (stride, rest) = rest.split_once(')').unwrap();
            used.insert((name.to_owned(), size));
            l = format!(
                "{}emu_load_{name}_{size}({index}, {stride}){rest}",
                &l[..at]
            );
        }
        // coopStoreT(VALUE, PTR, STRIDE);  →  emu_store_NAME(VALUE, PTR, STRIDE);
        if let Some(at) = l.find("coopStoreT(") {
            let args: Vec<&str> = l[at + 11..].trim_end_matches(");").split(", ").collect();
            let name = &pointers[args[1]];
            used.insert((name.clone(), size));
            l = format!(
                "{}emu_store_{name}_{size}({}, {}, {});",
                &l[..at],
                args[0],
                args[1],
                args[2]
            );
        }
        l = l.replace("coopMultiplyAdd(", &format!("emu_mma_{size}("));
        // Only lane 0 of the four quadrant owners computes and stores (the other lanes would
        // repeat its work, and lavapipe runs them one after another).
        if l.contains("@builtin(num_subgroups) nsg: u32,") {
            l.push_str("\n    @builtin(subgroup_invocation_id) emu_lane: u32,");
            entry_open = true;
        } else if entry_open && l == ") {" {
            l.push_str("\n    emu_active = emu_lane == 0u && sid < 4u;");
            entry_open = false;
        }
        while let Some(at) = l.find("coop_mat") {
            let end = at + l[at..].find('>').unwrap() + 1;
            l = format!("{}Emu{size}{}", &l[..at], &l[end..]);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("var<private> emu_active: bool;\n");
    for s in [16, 8] {
        out.push_str(&format!(
            "struct Emu{s} {{ v: array<f32, {n}> }}\n\
             fn emu_mma_{s}(a: Emu{s}, b: Emu{s}, c: Emu{s}) -> Emu{s} {{\n\
             \x20   var r = c;\n\
             \x20   if (!emu_active) {{ return r; }}\n\
             \x20   for (var i = 0u; i < {s}u; i++) {{ for (var j = 0u; j < {s}u; j++) {{\n\
             \x20       var acc = r.v[i * {s}u + j];\n\
             \x20       for (var l = 0u; l < {s}u; l++) {{ acc += a.v[i * {s}u + l] * b.v[l * {s}u + j]; }}\n\
             \x20       r.v[i * {s}u + j] = acc;\n\
             \x20   }} }}\n\
             \x20   return r;\n\
             }}\n",
            n = s * s
        ));
    }
    for (name, s) in used {
        let t = &elem[&name];
        out.push_str(&format!(
            "fn emu_load_{name}_{s}(base: u32, stride: u32) -> Emu{s} {{\n\
             \x20   var m: Emu{s};\n\
             \x20   if (!emu_active) {{ return m; }}\n\
             \x20   for (var i = 0u; i < {n}u; i++) {{\n\
             \x20       m.v[i] = f32({name}[base + (i / {s}u) * stride + i % {s}u]);\n\
             \x20   }}\n\
             \x20   return m;\n\
             }}\n\
             fn emu_store_{name}_{s}(m: Emu{s}, base: u32, stride: u32) {{\n\
             \x20   if (!emu_active) {{ return; }}\n\
             \x20   for (var i = 0u; i < {n}u; i++) {{\n\
             \x20       {name}[base + (i / {s}u) * stride + i % {s}u] = {t}(m.v[i]);\n\
             \x20   }}\n\
             }}\n",
            n = s * s
        ));
    }
    out
}

/// A raw wgpu device with SHADER_F16 and SUBGROUP (lavapipe has both), for the emulated kernels.
struct EmuGpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// Pipelines by entry point and override constants (lavapipe compiles each in seconds).
    pipelines: std::cell::RefCell<BTreeMap<String, wgpu::ComputePipeline>>,
}

impl EmuGpu {
    fn open() -> Result<EmuGpu, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| e.to_string())?;
        let need = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        if !adapter.features().contains(need) {
            return Err(format!(
                "adapter {:?} lacks SHADER_F16 or SUBGROUP",
                adapter.get_info().name
            ));
        }
        // WebGPU's default limits (16 KiB of workgroup memory, 256 invocations), as cht requests.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gemm_test.emulated_tensor_cores"),
            required_features: need,
            required_limits: wgpu::Limits::defaults(),
            ..Default::default()
        }))
        .map_err(|e| e.to_string())?;
        let source = emulated_tensor_core_wgsl();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gemm_coop.emulated"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let read = wgpu::BufferBindingType::Storage { read_only: true };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gemm_coop.emulated"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, read),
                entry(2, read),
                entry(3, read),
                entry(4, read),
                entry(5, wgpu::BufferBindingType::Storage { read_only: false }),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gemm_coop.emulated"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        Ok(EmuGpu {
            device,
            queue,
            module,
            layout,
            pipeline_layout,
            pipelines: Default::default(),
        })
    }

    fn buffer(&self, label: &str, words: &[u32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.len().max(1) * 4) as u64,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !words.is_empty() {
            self.queue
                .write_buffer(&buffer, 0, bytemuck_cast(words).as_slice());
        }
        buffer
    }

    /// Runs `entry` with workgroup size `wg` on `case` and returns C.
    fn run(&self, entry: &str, size: usize, wg: u32, case: &Case, epi: Epi) -> Vec<f32> {
        let accumulate = matches!(epi, Epi::MaskCAccumulate | Epi::BiasAccumulate);
        let (mask_a, mask_c) = (epi == Epi::MaskA, epi == Epi::MaskCAccumulate);
        let flags = match epi {
            Epi::Plain | Epi::MaskA => 0,
            Epi::BiasRelu => 3,
            Epi::MaskCAccumulate => 4,
            Epi::BiasAccumulate => 5,
        };
        let bit = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("TRANS_A", bit(case.ta == Transpose::Yes)),
            ("TRANS_B", bit(case.tb == Transpose::Yes)),
            ("MASK_A", bit(mask_a)),
            ("MASK_C", bit(mask_c)),
            ("WG", f64::from(wg)),
        ];
        let key = format!("{entry} {constants:?}");
        let pipeline = self
            .pipelines
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&self.pipeline_layout),
                        module: &self.module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            ..Default::default()
                        },
                        cache: None,
                    })
            })
            .clone();
        let f = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let storage = wgpu::BufferUsages::STORAGE;
        let params = [case.m as u32, case.n as u32, case.k as u32, flags];
        let c_init = if accumulate {
            case.c0.clone()
        } else {
            poison(case.m * case.n)
        };
        let mask = if mask_a {
            case.mask_a.clone()
        } else {
            case.mask_c.clone()
        };
        let buffers = [
            self.buffer("params", &params, wgpu::BufferUsages::UNIFORM),
            self.buffer("a", &f(&case.a), storage),
            self.buffer("b", &f(&case.b), storage),
            self.buffer("bias", &f(&case.bias), storage),
            self.buffer("mask", &mask, storage),
            self.buffer("c", &f(&c_init), storage | wgpu::BufferUsages::COPY_SRC),
        ];
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gemm_coop.emulated"),
            layout: &self.layout,
            entries: &entries,
        });
        let bytes = (case.m * case.n * 4) as u64;
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gemm_coop.emulated.readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gemm_coop.emulated"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            let tile = 4 * size;
            pass.dispatch_workgroups(
                case.n.div_ceil(tile) as u32,
                case.m.div_ceil(tile) as u32,
                1,
            );
        }
        encoder.copy_buffer_to_buffer(&buffers[5], 0, &readback, 0, Some(bytes));
        self.queue.submit([encoder.finish()]);
        readback.map_async(wgpu::MapMode::Read, .., |r| r.expect("map"));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("poll");
        let words: Vec<f32> = readback
            .get_mapped_range(..)
            .expect("mapped")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        readback.unmap();
        words
    }
}

fn bytemuck_cast(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn tensor_core_kernel_logic_matches_twin_with_emulated_cooperative_matrices() {
    if gpu().is_none() {
        return;
    }
    let emu = match EmuGpu::open() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("emulated tensor-core kernels skipped: {why}");
            return;
        }
    };
    let cpu = cpu();
    // Full 32×32 tiles (the direct store), edge tiles (C's width not a multiple of 4: the
    // epilogue rounds), partial last k-slices, k = 0. Kept small: lavapipe's LLVM back end ends a
    // loop after 65535 iterations in all (its guard against hangs), and the emulation spends
    // ~600 per cooperative product.
    let shapes = [(65, 64, 65), (63, 127, 3), (3, 1, 0)];
    // Each (entry, transposes, mask kind, WG) is a pipeline, which a cold Mesa cache compiles in
    // seconds: the epilogues and masks run untransposed, the transposes (shared staging code) run
    // fully on the mixed kernel and both-transposed on the f16-only one, MASK_A also transposed.
    let mut cases = Vec::new();
    for (entry, transposes) in [
        ("gemm_coop8", &TRANSPOSES[..]),
        ("gemm_coop8_h", &[TRANSPOSES[0], TRANSPOSES[3]][..]),
    ] {
        for &(ta, tb) in transposes {
            let both = ta == tb;
            for epi in EPIS {
                let nn = ta == Transpose::No && both;
                let wanted =
                    nn || epi == Epi::Plain || (both && epi == Epi::MaskA && entry == "gemm_coop8");
                if wanted {
                    // 256 invocations (as with subgroups of 64) once, else 128.
                    let wg = if nn && epi == Epi::Plain && entry == "gemm_coop8" {
                        256
                    } else {
                        128
                    };
                    cases.push((entry, ta, tb, epi, wg));
                }
            }
        }
    }
    assert_eq!(cases.len(), (5 + 1 + 1 + 2) + (5 + 1));
    for (seed, &(m, n, k)) in shapes.iter().enumerate() {
        for &(entry, ta, tb, epi, wg) in &cases {
            let case = Case::new(m, n, k, ta, tb, 100 + seed as u32);
            let want = run(&cpu, &case, &bind(&cpu, &case), epi, GemmKernel::Auto);
            let got = emu.run(entry, 8, wg, &case, epi);
            let what = format!("{entry} (emulated, WG {wg}) {m}x{n}x{k} {ta:?}/{tb:?} {epi:?}");
            // f16 operands (and f16 slice products in the _h kernel): relative 1e-2, √k.
            let rel = 1e-2 * (k.max(1) as f32).sqrt();
            check(&what, &case, &got, &want, |i, j| {
                rel * (1.0 + want[i * n + j].abs())
            });
        }
    }
}
