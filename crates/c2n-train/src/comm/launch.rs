//! Backend selection and the one-call launcher the trainer uses.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CommError, Communicator, SingleComm, ThreadGroup, DEFAULT_TIMEOUT};

/// The communicator backends (`--backend single|threads|mpi|nccl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One rank, no communication.
    #[default]
    Single,
    /// Ranks as threads of this process (CPU, shared memory).
    Threads,
    /// Ranks as MPI processes (CPU, distributed memory; feature `mpi`).
    Mpi,
    /// GPUs over NCCL (feature `nccl`): one process per GPU under a launcher (torchrun, srun),
    /// else one thread per GPU in this process.
    Nccl,
}

impl Backend {
    /// Every backend, in documentation order.
    pub const ALL: [Backend; 4] = [
        Backend::Single,
        Backend::Threads,
        Backend::Mpi,
        Backend::Nccl,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Single => "single",
            Backend::Threads => "threads",
            Backend::Mpi => "mpi",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this build contains the backend (MPI and NCCL are cargo features).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Single | Backend::Threads => true,
            Backend::Mpi => cfg!(feature = "mpi"),
            Backend::Nccl => cfg!(feature = "nccl"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = CommError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                CommError::InvalidInput(format!(
                    "unknown backend `{s}` (expected single, threads, mpi or nccl)"
                ))
            })
    }
}

/// What [`launch`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Which backend.
    pub backend: Backend,
    /// Ranks to start (threads; nccl without a launcher, where `None` means every visible GPU),
    /// or the size the external launcher must have started (mpi, nccl); `None` accepts whatever
    /// the launcher started.
    pub world_size: Option<usize>,
    /// Bound on any single wait (thread collectives, TCP rendezvous).
    pub timeout: Duration,
}

impl LaunchSpec {
    /// A spec with the default timeout.
    pub fn new(backend: Backend, world_size: Option<usize>) -> Self {
        Self {
            backend,
            world_size,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Runs `body` as every rank this process hosts and returns rank 0's result (threads, and nccl
/// without a launcher: one thread per GPU) or this process's result (single, mpi, and nccl
/// under torchrun or srun).
///
/// With threads, `body` runs once per thread; if ranks fail, the error of the rank that failed first is
/// returned (the others typically fail because it left). Under MPI with several ranks, a rank whose
/// `body` fails or panics prints why and aborts the whole job (`MPI_Abort`): finalizing MPI would
/// wait for the other ranks, which may be blocked in a collective for ever.
///
/// ```
/// use c2n_train::comm::{launch, Backend, CommError, Communicator, LaunchSpec, ReduceOp};
///
/// let spec = LaunchSpec::new(Backend::Threads, Some(4));
/// let total = launch(&spec, |comm| -> Result<f32, CommError> {
///     comm.all_reduce_scalar(comm.rank() as f32, ReduceOp::Sum)
/// })?;
/// assert_eq!(total, 6.0);
/// # Ok::<(), CommError>(())
/// ```
pub fn launch<T, E, F>(spec: &LaunchSpec, body: F) -> Result<T, E>
where
    T: Send,
    E: Send + From<CommError> + fmt::Display,
    F: Fn(&dyn Communicator) -> Result<T, E> + Sync,
{
    let check_world = |actual: usize| -> Result<(), CommError> {
        match spec.world_size {
            Some(expected) if expected != actual => {
                let how = match spec.backend {
                    Backend::Single => {
                        "it runs one; --backend threads runs several in this process"
                    }
                    Backend::Mpi => "mpirun -np sets the count, and outside mpirun there is one",
                    Backend::Nccl => "the launcher (torchrun, srun) sets the count",
                    Backend::Threads => "",
                };
                Err(CommError::InvalidInput(format!(
                    "--world-size {expected}, but the {} backend has {actual} rank(s): {how}",
                    spec.backend
                )))
            }
            _ => Ok(()),
        }
    };
    match spec.backend {
        Backend::Single => {
            check_world(1)?;
            body(&SingleComm)
        }
        Backend::Threads => {
            let group = ThreadGroup::new(spec.world_size.unwrap_or(1))?.with_timeout(spec.timeout);
            let results = group.run_fallible(|comm| body(comm))?;
            results
                .into_iter()
                .next()
                .ok_or_else(|| CommError::InvalidInput("no ranks ran".into()).into())
        }
        Backend::Mpi => {
            #[cfg(feature = "mpi")]
            {
                let comm = super::MpiComm::init_with_timeout(spec.timeout)?;
                check_world(comm.world_size())?;
                // Finalizing MPI (which an error return or a panic's unwinding would do) waits
                // forever for ranks blocked in a collective: report the failure and take the
                // whole job down instead.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&comm)));
                match outcome {
                    Ok(result) => {
                        if let Err(e) = &result {
                            comm.abort_job(&e.to_string());
                        }
                        result
                    }
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        comm.abort_job(&format!("panicked: {message}"));
                        std::panic::resume_unwind(panic)
                    }
                }
            }
            #[cfg(not(feature = "mpi"))]
            {
                Err(not_compiled(Backend::Mpi).into())
            }
        }
        Backend::Nccl => {
            #[cfg(feature = "nccl")]
            {
                let env = super::LaunchEnv::from_env()?;
                if env.launcher == super::Launcher::None {
                    // No launcher: this process hosts every rank, one thread per GPU.
                    let results =
                        super::NcclComm::run_threads(spec.world_size, spec.timeout, |comm| {
                            body(comm)
                        })?;
                    return results
                        .into_iter()
                        .next()
                        .ok_or_else(|| CommError::InvalidInput("no ranks ran".into()).into());
                }
                check_world(env.world_size)?;
                let comm = super::NcclComm::from_launch_env(&env, spec.timeout)?;
                body(&comm)
            }
            #[cfg(not(feature = "nccl"))]
            {
                Err(not_compiled(Backend::Nccl).into())
            }
        }
    }
}

#[cfg(any(not(feature = "mpi"), not(feature = "nccl")))]
fn not_compiled(backend: Backend) -> CommError {
    CommError::Unsupported(format!(
        "backend `{backend}` is not in this build; rebuild with the `{backend}` feature \
         (`--features {backend}` for the code2nl programs, or on the c2n-train dependency)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert_eq!(" Threads ".parse::<Backend>().unwrap(), Backend::Threads);
        assert!("gloo".parse::<Backend>().is_err());
    }

    #[test]
    fn single_backend_rejects_a_larger_world() {
        let err = launch(&LaunchSpec::new(Backend::Single, Some(2)), |_| {
            Ok::<_, CommError>(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("--world-size 2"), "{err}");
    }

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn missing_feature_is_a_clear_error() {
        let err = launch(&LaunchSpec::new(Backend::Mpi, None), |_| {
            Ok::<_, CommError>(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("--features mpi"), "{err}");
    }
}
