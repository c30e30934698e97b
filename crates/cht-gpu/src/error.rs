//! The error type of the device layer.

/// Everything that can go wrong on a [`crate::Device`]. GPU validation and out-of-memory errors are
/// caught (error scopes and an uncaptured-error handler) and returned here instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched and the CPU fallback was not allowed.
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("requesting a device from adapter {adapter:?} failed: {reason}")]
    DeviceRequest {
        /// Name of the adapter that refused.
        adapter: String,
        /// wgpu's explanation.
        reason: String,
    },
    /// wgpu reported a validation error (a bug in cht if it ever happens: please report it).
    #[error("GPU validation error: {0}")]
    Validation(String),
    /// The GPU ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// The device was lost or a readback failed.
    #[error("GPU device error: {0}")]
    Device(String),
    /// Tensor shapes do not fit the operation.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// Name of the operation that rejected its arguments.
        op: &'static str,
        /// Which dimensions disagree, with their values.
        detail: String,
    },
    /// An operation got a tensor of the wrong element type.
    #[error("{op}: tensor {tensor:?} holds {got:?}, expected {expected:?}")]
    DType {
        /// Name of the operation.
        op: &'static str,
        /// Label of the offending tensor.
        tensor: String,
        /// Element type the tensor holds.
        got: crate::DType,
        /// Element type the operation needs.
        expected: crate::DType,
    },
    /// The same tensor was passed as an input and an output of one operation: the tensor's label,
    /// then the operation's name.
    #[error("{op}: tensor {0:?} is both read and written", op = .1)]
    Aliased(String, &'static str),
    /// A tensor from another device.
    #[error("{op}: tensor {tensor:?} belongs to a different backend")]
    WrongBackend {
        /// Name of the operation.
        op: &'static str,
        /// Label of the foreign tensor.
        tensor: String,
    },
    /// Invalid sparse structure.
    #[error(transparent)]
    Sparse(#[from] cht_sparse::Error),
    /// A request exceeds what the adapter supports.
    #[error("{0}")]
    Unsupported(String),
}

/// Result alias for the device layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn shape_err(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Shape {
        op,
        detail: detail.into(),
    }
}
