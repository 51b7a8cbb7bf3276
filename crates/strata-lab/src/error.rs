//! Why a load run could not start or finish. Failed requests are not errors: they are counted
//! in the [`LoadReport`](crate::LoadReport) by [`Failure`](crate::Failure) kind.

/// A load run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The spec is out of bounds or malformed; `field` names the offending setting.
    #[error("invalid load spec: {field}: {message}")]
    Spec {
        field: &'static str,
        message: String,
    },
    /// The target's host name could not be resolved.
    #[error("cannot resolve {authority}: {source}")]
    Resolve {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    /// The target's host name resolved to no address at all.
    #[error("{authority} resolves to no address")]
    NoAddress { authority: String },
    /// The scenario's setup failed (the shop's catalog, a customer's registration or log-in),
    /// before any measured request.
    #[error("scenario setup failed at {step}: {message}")]
    Setup { step: &'static str, message: String },
    /// The open loop's dispatcher thread could not be started.
    #[error("cannot start the schedule's thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker task panicked (a bug in the load generator).
    #[error("a load worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// A process of the lab could not be started or signalled.
    #[error("lab: cannot {action} {name}: {source}")]
    Process {
        action: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A step of the lab did not happen as it must (a process not ready in time, an admin
    /// call refused, a store that could not be filled).
    #[error("lab: {step}: {message}")]
    Experiment { step: &'static str, message: String },
    /// A report file could not be written.
    #[error("lab: cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lab was stopped (Ctrl-C or SIGTERM) before it finished.
    #[error("lab: stopped before the end")]
    Stopped,
}

impl LabError {
    pub(crate) fn setup(step: &'static str, message: impl Into<String>) -> Self {
        Self::Setup {
            step,
            message: message.into(),
        }
    }

    /// A [`LabError::Experiment`] at `step`.
    pub fn experiment(step: &'static str, message: impl Into<String>) -> Self {
        Self::Experiment {
            step,
            message: message.into(),
        }
    }

    /// A [`LabError::Spec`] naming `field`.
    pub fn spec(field: &'static str, message: impl Into<String>) -> Self {
        Self::Spec {
            field,
            message: message.into(),
        }
    }
}
