//! naga validation and translation of the WGSL kernels with the settings of wgpu 30's backends,
//! shared by `tests/backends.rs` (every kernel, every back end) and `tests/gemm.rs` (what the
//! tensor-core SPIR-V and MSL must contain).
//!
//! Where each setting comes from (wgpu-hal 30.0.2 sources):
//! * SPIR-V (Vulkan): `src/vulkan/adapter.rs` picks `lang_version` from the device's Vulkan version
//!   (1.0 → SPIR-V 1.0, 1.1 → 1.3, 1.2 → 1.5, 1.3+ → 1.6), bounds checks `Restrict` (or none for
//!   modules created with `create_shader_module_trusted` and unchecked runtime checks,
//!   `src/vulkan/device.rs`), `force_loop_bounding` likewise.
//! * MSL (Metal): `src/metal/adapter.rs` picks the Metal Shading Language version from the OS
//!   (macOS 11 / iOS 14 → 2.3, macOS 12 → 2.4, 13 → 3.0, 14 → 3.1, 15 → 3.2, 26 → 4.0, older systems
//!   older versions), `src/metal/device.rs` writes with that `lang_version`, bounds checks
//!   `Restrict` or `Unchecked` per module, one buffer slot per binding and a sizes buffer.
//! * HLSL (DX12): `src/dx12/adapter.rs` uses shader model 5.1 with FXC (what
//!   `Dx12Compiler::Auto` falls back to without DXC) and the device's highest model from 6.0 to
//!   6.9 (capped by the DXC in use) otherwise; `src/dx12/device.rs` writes with
//!   `restrict_indexing` and `force_loop_bounding` (off for unchecked modules), registers per
//!   class (CBV b, SRV t for read-only storage, UAV u for read-write) in space = group, and a
//!   special-constants CBV for `num_workgroups`.
//! * GLSL (GL): `src/gles/adapter.rs` writes the context's GLSL version: ES 3.10+ on GLES
//!   contexts (what wgpu's GLES backend needs for compute), desktop 4.30+ capped at 4.50 on desktop
//!   contexts (`src/gles/egl.rs` prefers a desktop context, which Mesa gives: llvmpipe through EGL
//!   is "4.5 (Core Profile)"); `src/gles/device.rs` writes without index/buffer bounds checks,
//!   binding slots per class in order, and zero-initialised workgroup memory.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// WebGPU's default limits, which every kernel must fit (cht requests them on every adapter).
pub const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;
/// WebGPU's default `maxComputeInvocationsPerWorkgroup`.
pub const MAX_INVOCATIONS: u32 = 256;

/// The MSL versions wgpu 30's Metal backend can pick (see the module doc); 1.x predates every
/// system wgpu supports for compute with storage buffers written from shaders.
pub const MSL_VERSIONS: [(u8, u8); 9] = [
    (2, 0),
    (2, 1),
    (2, 2),
    (2, 3),
    (2, 4),
    (3, 0),
    (3, 1),
    (3, 2),
    (4, 0),
];

/// The shader models wgpu 30's DX12 backend can pick: 5.1 (FXC) and 6.0 to 6.9 (DXC).
pub const HLSL_SHADER_MODELS: [hlsl::ShaderModel; 11] = [
    hlsl::ShaderModel::V5_1,
    hlsl::ShaderModel::V6_0,
    hlsl::ShaderModel::V6_1,
    hlsl::ShaderModel::V6_2,
    hlsl::ShaderModel::V6_3,
    hlsl::ShaderModel::V6_4,
    hlsl::ShaderModel::V6_5,
    hlsl::ShaderModel::V6_6,
    hlsl::ShaderModel::V6_7,
    hlsl::ShaderModel::V6_8,
    hlsl::ShaderModel::V6_9,
];

/// The SPIR-V versions wgpu 30's Vulkan backend can pick (Vulkan 1.0, 1.1, 1.2, 1.3+).
pub const SPIRV_VERSIONS: [(u8, u8); 4] = [(1, 0), (1, 3), (1, 5), (1, 6)];

/// The GLSL versions wgpu 30's GL backend writes for compute: OpenGL ES 3.10 (the least with
/// compute shaders, e.g. Android and ANGLE) and 3.20, desktop 4.30 (least with compute) and 4.50
/// (the cap, what Mesa's llvmpipe context gets).
pub const GLSL_VERSIONS: [glsl::Version; 4] = [
    glsl::Version::Embedded {
        version: 310,
        is_webgl: false,
    },
    glsl::Version::Embedded {
        version: 320,
        is_webgl: false,
    },
    glsl::Version::Desktop(430),
    glsl::Version::Desktop(450),
];

/// Parses and validates WGSL with `caps`, panicking with naga's message on failure.
pub fn parse(what: &str, source: &str, caps: Capabilities) -> (Module, ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what}: validation failed: {e:?}"));
    (module, info)
}

/// Applies `constants` for `entry` as wgpu does before any back end (naga's
/// `process_overrides`), re-validates the specialised module with `caps`, checks the WebGPU
/// limits, and returns it.
pub fn process(
    what: &str,
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
    constants: &[(&str, f64)],
    caps: Capabilities,
) -> (Module, ModuleInfo) {
    let mut pc = naga::back::PipelineConstants::default();
    for &(name, value) in constants {
        pc.insert(name.to_owned(), value);
    }
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, entry)),
        &pc,
    )
    .unwrap_or_else(|e| panic!("{what}: override processing failed: {e:?}"));
    let (m, i) = (m.into_owned(), i.into_owned());
    Validator::new(ValidationFlags::all(), caps)
        .validate(&m)
        .unwrap_or_else(|e| panic!("{what}: specialised module invalid: {e:?}"));
    let ep = m
        .entry_points
        .iter()
        .find(|ep| ep.name == entry)
        .unwrap_or_else(|| panic!("{what}: no entry point"));
    assert_eq!(
        ep.stage,
        ShaderStage::Compute,
        "{what}: not a compute entry"
    );
    let invocations: u32 = ep.workgroup_size.iter().product();
    assert!(
        invocations <= MAX_INVOCATIONS,
        "{what}: {invocations} invocations"
    );
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(m.to_ctx()).unwrap();
    let bytes: u32 = m
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
        .map(|(_, v)| layouter[v.ty].size)
        .sum();
    assert!(
        bytes <= MAX_WORKGROUP_BYTES,
        "{what}: {bytes} bytes of workgroup memory"
    );
    (m, i)
}

/// cht's bind-group layout of a kernel: binding 0 the uniform parameter block, bindings 1..=n
/// storage buffers, read-only where `read_only[i - 1]`.
pub struct Layout<'a> {
    /// Read-only flags of bindings 1..=n.
    pub read_only: &'a [bool],
}

fn binding(binding: u32) -> naga::ResourceBinding {
    naga::ResourceBinding { group: 0, binding }
}

/// SPIR-V as wgpu's Vulkan backend writes it.
pub fn spirv(
    what: &str,
    (m, i): (&Module, &ModuleInfo),
    entry: &str,
    lang_version: (u8, u8),
    runtime_checks: bool,
) -> Result<Vec<u32>, String> {
    let policy = if runtime_checks {
        naga::proc::BoundsCheckPolicy::Restrict
    } else {
        naga::proc::BoundsCheckPolicy::Unchecked
    };
    let options = spv::Options {
        lang_version,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy,
            buffer: policy,
            image_load: policy,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        force_loop_bounding: runtime_checks,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_owned(),
    };
    spv::write_vec(m, i, &options, Some(&pipeline)).map_err(|e| format!("{what}: SPIR-V: {e:?}"))
}

/// MSL as wgpu's Metal backend writes it.
pub fn msl(
    what: &str,
    (m, i): (&Module, &ModuleInfo),
    entry: &str,
    layout: &Layout<'_>,
    lang_version: (u8, u8),
    runtime_checks: bool,
) -> Result<String, String> {
    let mut resources = msl::BindingMap::default();
    resources.insert(
        binding(0),
        msl::BindTarget {
            buffer: Some(0),
            ..Default::default()
        },
    );
    for (slot, &read_only) in layout.read_only.iter().enumerate() {
        let slot = slot as u8 + 1;
        resources.insert(
            binding(u32::from(slot)),
            msl::BindTarget {
                buffer: Some(slot),
                mutable: !read_only,
                ..Default::default()
            },
        );
    }
    let mut per_entry_point_map = msl::EntryPointResourceMap::default();
    per_entry_point_map.insert(
        entry.to_owned(),
        msl::EntryPointResources {
            resources,
            immediates_buffer: None,
            sizes_buffer: Some(layout.read_only.len() as u8 + 1),
        },
    );
    let policy = if runtime_checks {
        naga::proc::BoundsCheckPolicy::Restrict
    } else {
        naga::proc::BoundsCheckPolicy::Unchecked
    };
    let options = msl::Options {
        lang_version,
        per_entry_point_map,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy,
            buffer: policy,
            image_load: policy,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: true,
        force_loop_bounding: runtime_checks,
        emit_int_div_checks: runtime_checks,
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_owned())),
        ..Default::default()
    };
    msl::write_string(m, i, &options, &pipeline)
        .map(|(source, _)| source)
        .map_err(|e| format!("{what}: MSL {lang_version:?}: {e:?}"))
}

/// HLSL as wgpu's DX12 backend writes it.
pub fn hlsl(
    what: &str,
    (m, i): (&Module, &ModuleInfo),
    entry: &str,
    layout: &Layout<'_>,
    shader_model: hlsl::ShaderModel,
    runtime_checks: bool,
) -> Result<String, String> {
    let target = |register: u32| hlsl::BindTarget {
        space: 0,
        register,
        binding_array_size: None,
        dynamic_storage_buffer_offsets_index: None,
        restrict_indexing: false,
    };
    let mut binding_map = hlsl::BindingMap::default();
    // The parameter block: b0 (a root CBV with a dynamic offset in wgpu).
    binding_map.insert(binding(0), target(0));
    let (mut srv, mut uav) = (0, 0);
    for (b, &read_only) in layout.read_only.iter().enumerate() {
        let counter = if read_only { &mut srv } else { &mut uav };
        binding_map.insert(binding(b as u32 + 1), target(*counter));
        *counter += 1;
    }
    let options = hlsl::Options {
        shader_model,
        binding_map,
        // wgpu adds this CBV when the layout uses `num_workgroups`; the kernels that rebuild wide
        // grids do, so it is always there.
        special_constants_binding: Some(target(1)),
        zero_initialize_workgroup_memory: true,
        restrict_indexing: runtime_checks,
        force_loop_bounding: runtime_checks,
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_owned())),
    };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &options, &pipeline)
        .write(m, i, None)
        .map_err(|e| format!("{what}: HLSL {shader_model:?}: {e:?}"))?;
    Ok(out)
}

/// GLSL as wgpu's GL backend writes it.
pub fn glsl(
    what: &str,
    (m, i): (&Module, &ModuleInfo),
    entry: &str,
    layout: &Layout<'_>,
    version: glsl::Version,
) -> Result<String, String> {
    let mut binding_map = glsl::BindingMap::default();
    binding_map.insert(binding(0), 0);
    for b in 0..layout.read_only.len() {
        binding_map.insert(binding(b as u32 + 1), b as u8);
    }
    let options = glsl::Options {
        version,
        writer_flags: glsl::WriterFlags::ADJUST_COORDINATE_SPACE
            | glsl::WriterFlags::FORCE_POINT_SIZE,
        binding_map,
        zero_initialize_workgroup_memory: true,
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_owned(),
        multiview: None,
    };
    let mut out = String::new();
    glsl::Writer::new(
        &mut out,
        m,
        i,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| format!("{what}: GLSL {version}: {e:?}"))?;
    Ok(out)
}
