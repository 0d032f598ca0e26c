//! Who am I? Rank, world size and rendezvous address from the launcher's environment variables.
//!
//! Precedence, most explicit first:
//! 1. torchrun (and any manual launch): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`;
//! 2. Open MPI's `mpirun`: `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_LOCAL_RANK`
//!    (before Slurm, because `mpirun` inside an `sbatch` script inherits the batch step's `SLURM_PROCID=0`);
//! 3. Slurm's `srun`: `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (else `SLURM_NTASKS`), `SLURM_LOCALID`,
//!    only inside a job step (`SLURM_STEP_ID` set): a batch script run without `srun` has
//!    `SLURM_PROCID=0` and the job's `SLURM_NTASKS` but is one process;
//! 4. nothing set: a single rank.
//!
//! `MASTER_ADDR`/`MASTER_PORT` name rank 0's host and a port; they default to `127.0.0.1:29500`, which only
//! works when all ranks share one node. The TCP rendezvous of this crate listens on `MASTER_PORT + 1`
//! (or `C2N_RENDEZVOUS_PORT`), because torchrun's own agent store already listens on `MASTER_PORT`.

use super::{CommError, CommResult};

/// Rank 0's address when `MASTER_ADDR` is unset (single-node runs only).
pub const DEFAULT_MASTER_ADDR: &str = "127.0.0.1";
/// The port when `MASTER_PORT` is unset (PyTorch's default).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// Which launcher the variables came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `RANK`/`WORLD_SIZE`/`LOCAL_RANK` (torchrun, or set by hand).
    Torchrun,
    /// `OMPI_COMM_WORLD_*` (Open MPI's mpirun).
    OpenMpi,
    /// `SLURM_PROCID`/`SLURM_STEP_NUM_TASKS`/`SLURM_LOCALID` inside an srun step.
    Slurm,
    /// No launcher variables: one rank.
    None,
}

/// The launcher as its users call it ("torchrun", "mpirun", "srun").
impl std::fmt::Display for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Torchrun => "torchrun",
            Self::OpenMpi => "mpirun",
            Self::Slurm => "srun",
            Self::None => "no launcher",
        })
    }
}

/// This process's place in the job, as told by the launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// Global rank, `0 .. world_size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world_size: usize,
    /// Rank on this node; picks the GPU (never the global rank).
    pub local_rank: usize,
    /// Rank 0's host name or IP address.
    pub master_addr: String,
    /// The launcher's port on rank 0 (`MASTER_PORT`).
    pub master_port: u16,
    /// The port the TCP rendezvous of this crate uses on rank 0.
    pub rendezvous_port: u16,
    /// True when `MASTER_ADDR` was set (false: defaulted to localhost).
    pub master_addr_from_env: bool,
    /// Where the rank variables came from.
    pub launcher: Launcher,
}

impl LaunchEnv {
    /// Reads the process environment.
    ///
    /// ```
    /// // Without launcher variables this is a single rank.
    /// let env = c2n_train::comm::LaunchEnv::from_lookup(|_| None).unwrap();
    /// assert_eq!((env.rank, env.world_size, env.local_rank), (0, 1, 0));
    /// ```
    pub fn from_env() -> CommResult<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (tests pass a map instead of touching the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> CommResult<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        // The first of `names` that is set: what made us believe in this launcher.
        let first_set = |names: &[&'static str]| names.iter().copied().find(|n| get(n).is_some());
        let torchrun = ["RANK", "WORLD_SIZE", "LOCAL_RANK"];
        let open_mpi = [
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
        ];
        // srun sets the step's task count; a batch script (no srun, no step id) has only the
        // job's SLURM_NTASKS and SLURM_PROCID=0, and is not a multi-rank launch.
        let slurm_world = if get("SLURM_STEP_NUM_TASKS").is_some() {
            "SLURM_STEP_NUM_TASKS"
        } else {
            "SLURM_NTASKS"
        };
        let slurm = ["SLURM_PROCID", slurm_world, "SLURM_LOCALID"];
        let in_slurm_step = get("SLURM_STEP_ID").is_some() || get("SLURM_STEPID").is_some();
        let (launcher, names, trigger) = if let Some(t) = first_set(&torchrun[..2]) {
            (Launcher::Torchrun, torchrun, t)
        } else if let Some(t) = first_set(&open_mpi[..2]) {
            (Launcher::OpenMpi, open_mpi, t)
        } else if let Some(t) = first_set(&slurm[..1]).filter(|_| in_slurm_step) {
            (Launcher::Slurm, slurm, t)
        } else {
            (Launcher::None, ["", "", ""], "")
        };
        let (rank, world_size, local_rank) = if launcher == Launcher::None {
            (0, 1, 0)
        } else {
            let required = |name: &str| -> CommResult<usize> {
                let value = get(name).ok_or_else(|| {
                    CommError::Env(format!(
                        "{name} is not set, but {trigger} is ({launcher} launch)"
                    ))
                })?;
                parse_usize(name, &value)
            };
            (
                required(names[0])?,
                required(names[1])?,
                required(names[2])?,
            )
        };
        if world_size == 0 {
            return Err(CommError::Env(format!("{} must be at least 1", names[1])));
        }
        // torchrun's variables left over in a shell that then runs mpirun: the two disagree,
        // and believing torchrun's would make each MPI process train alone.
        // A live torchrun (torchrun started by mpirun, one per node) also sets its own agent's
        // variables; then the two launchers' counts legitimately differ.
        if launcher == Launcher::Torchrun && get("TORCHELASTIC_RUN_ID").is_none() {
            let mpi_rank = get(open_mpi[0]).and_then(|v| v.trim().parse::<usize>().ok());
            let mpi_world = get(open_mpi[1]).and_then(|v| v.trim().parse::<usize>().ok());
            if let (Some(mpi_rank), Some(mpi_world)) = (mpi_rank, mpi_world) {
                if (mpi_rank, mpi_world) != (rank, world_size) {
                    return Err(CommError::Env(format!(
                        "RANK={rank} WORLD_SIZE={world_size} (torchrun's variables) disagree \
                         with mpirun's OMPI_COMM_WORLD_RANK={mpi_rank} \
                         OMPI_COMM_WORLD_SIZE={mpi_world}: unset the stale ones, or pass \
                         --backend mpi"
                    )));
                }
            }
        }
        if rank >= world_size {
            return Err(CommError::Env(format!(
                "{}={rank} is not below {}={world_size}",
                names[0], names[1]
            )));
        }
        if local_rank >= world_size {
            return Err(CommError::Env(format!(
                "{}={local_rank} is not below {}={world_size}",
                names[2], names[1]
            )));
        }
        let master_addr = get("MASTER_ADDR");
        let master_addr_from_env = master_addr.is_some();
        let master_port = match get("MASTER_PORT") {
            Some(v) => parse_port("MASTER_PORT", &v)?,
            None => DEFAULT_MASTER_PORT,
        };
        let rendezvous_port = match get("C2N_RENDEZVOUS_PORT") {
            Some(v) => parse_port("C2N_RENDEZVOUS_PORT", &v)?,
            None => master_port.checked_add(1).ok_or_else(|| {
                CommError::Env(
                    "MASTER_PORT=65535 leaves no port for the rendezvous; set C2N_RENDEZVOUS_PORT"
                        .into(),
                )
            })?,
        };
        Ok(Self {
            rank,
            world_size,
            local_rank,
            master_addr: master_addr.unwrap_or_else(|| DEFAULT_MASTER_ADDR.to_string()),
            master_port,
            rendezvous_port,
            master_addr_from_env,
            launcher,
        })
    }

    /// `host:port` of the TCP rendezvous on rank 0.
    pub fn rendezvous_addr(&self) -> String {
        if self.master_addr.contains(':') && !self.master_addr.starts_with('[') {
            format!("[{}]:{}", self.master_addr, self.rendezvous_port) // bare IPv6 address
        } else {
            format!("{}:{}", self.master_addr, self.rendezvous_port)
        }
    }
}

/// The variable that overrides how long one collective may wait (seconds; threads, MPI and the
/// TCP rendezvous), when set.
pub const TIMEOUT_VAR: &str = "C2N_COMM_TIMEOUT_S";

/// The wait bound `C2N_COMM_TIMEOUT_S` asks for, read through `lookup`: `None` when unset.
pub fn timeout_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> CommResult<Option<std::time::Duration>> {
    // A year: deadlines are `Instant + timeout`, which must not overflow ("no limit" in practice).
    const MAX_SECONDS: u64 = 365 * 24 * 3600;
    match lookup(TIMEOUT_VAR) {
        None => Ok(None),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Some(std::time::Duration::from_secs(
                seconds.min(MAX_SECONDS),
            ))),
            _ => Err(CommError::Env(format!(
                "{TIMEOUT_VAR}={value:?} is not a whole number of seconds above 0"
            ))),
        },
    }
}

fn parse_usize(name: &str, value: &str) -> CommResult<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| CommError::Env(format!("{name}={value:?} is not a non-negative integer")))
}

fn parse_port(name: &str, value: &str) -> CommResult<u16> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(CommError::Env(format!(
            "{name}={value:?} is not a TCP port (1-65535)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_variable_is_read_or_refused() {
        let with = |v: &'static str| move |name: &str| (name == TIMEOUT_VAR).then(|| v.to_string());
        assert_eq!(timeout_from_lookup(|_| None).unwrap(), None);
        assert_eq!(
            timeout_from_lookup(with(" 1800 ")).unwrap(),
            Some(std::time::Duration::from_secs(1800))
        );
        // "No limit" spelled as a huge number: capped, so deadlines cannot overflow.
        assert_eq!(
            timeout_from_lookup(with("99999999999999")).unwrap(),
            Some(std::time::Duration::from_secs(365 * 24 * 3600))
        );
        for bad in ["0", "-5", "10m", ""] {
            let err = timeout_from_lookup(with(bad)).unwrap_err().to_string();
            assert!(err.contains(TIMEOUT_VAR), "{bad}: {err}");
        }
    }
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> CommResult<LaunchEnv> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LaunchEnv::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn no_variables_is_one_rank_on_localhost() {
        let e = env(&[]).unwrap();
        assert_eq!(e.launcher, Launcher::None);
        assert_eq!((e.rank, e.world_size, e.local_rank), (0, 1, 0));
        assert_eq!(e.rendezvous_addr(), "127.0.0.1:29501");
        assert!(!e.master_addr_from_env);
    }

    #[test]
    fn torchrun_variables() {
        let e = env(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node07"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(e.launcher, Launcher::Torchrun);
        assert_eq!((e.rank, e.world_size, e.local_rank), (5, 8, 1));
        assert_eq!((e.master_addr.as_str(), e.master_port), ("node07", 1234));
        assert_eq!(e.rendezvous_addr(), "node07:1235");
    }

    #[test]
    fn stale_torchrun_variables_under_mpirun_are_refused() {
        let mpirun = [
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ];
        let stale = [("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")];
        let both: Vec<(&str, &str)> = mpirun.iter().chain(&stale).copied().collect();
        let err = env(&both).unwrap_err().to_string();
        assert!(
            err.contains("WORLD_SIZE=1") && err.contains("OMPI_COMM_WORLD_SIZE=2"),
            "{err}"
        );
        // Agreeing variables (a launcher that sets both) are fine.
        let agreeing = [("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")];
        let both: Vec<(&str, &str)> = mpirun.iter().chain(&agreeing).copied().collect();
        assert_eq!(env(&both).unwrap().launcher, Launcher::Torchrun);
        assert_eq!(Launcher::OpenMpi.to_string(), "mpirun");
        // torchrun started by mpirun, one per node: torchrun's own counts hold.
        let nested = [
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("TORCHELASTIC_RUN_ID", "job7"),
        ];
        assert_eq!(env(&nested).unwrap().world_size, 8);
    }

    #[test]
    fn torchrun_wins_over_slurm_and_open_mpi_over_slurm() {
        let e = env(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_ID", "0"),
        ])
        .unwrap();
        assert_eq!((e.launcher, e.rank), (Launcher::Torchrun, 1));
        let e = env(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_ID", "0"),
        ])
        .unwrap();
        assert_eq!(
            (e.launcher, e.rank, e.world_size),
            (Launcher::OpenMpi, 3, 4)
        );
    }

    #[test]
    fn slurm_variables_and_rendezvous_port_override() {
        let e = env(&[
            ("SLURM_PROCID", "6"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "2"),
            ("SLURM_STEP_ID", "0"),
            ("MASTER_ADDR", "fe80::1"),
            ("C2N_RENDEZVOUS_PORT", "40000"),
        ])
        .unwrap();
        assert_eq!(e.launcher, Launcher::Slurm);
        assert_eq!((e.rank, e.world_size, e.local_rank), (6, 16, 2));
        assert_eq!(e.rendezvous_addr(), "[fe80::1]:40000");
        // A step's own task count wins over the job's.
        let e = env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEPID", "3"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size), (1, 4));
    }

    #[test]
    fn a_slurm_batch_script_without_srun_is_one_process() {
        // sbatch --ntasks=8: the batch step sees SLURM_PROCID=0 and SLURM_NTASKS=8 but no
        // step id; it is a single process, not rank 0 of 8.
        let e = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "0"),
        ])
        .unwrap();
        assert_eq!(e.launcher, Launcher::None);
        assert_eq!((e.rank, e.world_size), (0, 1));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = env(&[("RANK", "0"), ("LOCAL_RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WORLD_SIZE is not set, but RANK is"), "{err}");
        let err = env(&[("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RANK is not set, but WORLD_SIZE is"), "{err}");
        let err = env(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RANK=\"x\""), "{err}");
        let err = env(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not below"), "{err}");
        let err = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "0"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_ID", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SLURM_NTASKS must be at least 1"), "{err}");
        let err = env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_ID", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SLURM_LOCALID is not set"), "{err}");
        let err = env(&[("MASTER_PORT", "70000")]).unwrap_err().to_string();
        assert!(err.contains("MASTER_PORT=\"70000\""), "{err}");
        let err = env(&[("MASTER_PORT", "65535")]).unwrap_err().to_string();
        assert!(err.contains("C2N_RENDEZVOUS_PORT"), "{err}");
        let err = env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "4"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OMPI_COMM_WORLD_LOCAL_RANK=4 is not below"),
            "{err}"
        );
    }
}
