//! Ranks as threads of one process, meeting through a mutex and a condition variable.
//!
//! Each collective is one rendezvous: every rank deposits its contribution in its slot; the last rank to
//! arrive combines the slots **in rank order** (so sums are deterministic and identical on every rank),
//! publishes the outcome and bumps a generation counter; the others wake up, copy the outcome and leave.
//! A rank cannot enter the next collective's completion before every rank has read the previous
//! outcome, because completion needs every rank's next contribution, so one outcome slot is enough.
//!
//! Failures are shared: a timeout, a mismatch, or a rank that returns or panics while others wait marks
//! the group as failed and wakes everyone, so all ranks return an error promptly instead of each waiting
//! out its own timeout.

use std::any::Any;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::{Backend, CommError, CommResult, Communicator, ReduceOp};

/// How long a rank waits in one collective before the group gives up (training steps are far shorter).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Launches `world_size` ranks as scoped threads.
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    world_size: usize,
    timeout: Duration,
}

/// The most ranks one thread group runs.
pub const MAX_THREAD_RANKS: usize = 256;

impl ThreadGroup {
    /// A group of `world_size ≥ 1` ranks with the [`DEFAULT_TIMEOUT`].
    pub fn new(world_size: usize) -> CommResult<Self> {
        if world_size == 0 {
            return Err(CommError::InvalidInput(
                "a thread group needs at least one rank".into(),
            ));
        }
        // Each rank is a thread with its own model replica: thousands would exhaust memory
        // long before any rank got data.
        if world_size > MAX_THREAD_RANKS {
            return Err(CommError::InvalidInput(format!(
                "{world_size} thread ranks: at most {MAX_THREAD_RANKS} (each holds a model \
                 replica; more ranks than examples per batch leave ranks idle)"
            )));
        }
        Ok(Self {
            world_size,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long any rank may wait in one collective before every rank fails with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Runs `f` once per rank, each on its own thread, and returns the results in rank order.
    ///
    /// A rank that returns while others still wait for it makes their collectives fail with
    /// [`CommError::PeerFailed`]. Fails only if a rank panicked (the first one to do so).
    pub fn run<T, F>(&self, f: F) -> CommResult<Vec<T>>
    where
        T: Send,
        F: Fn(&ThreadComm) -> T + Sync,
    {
        let outcome = self.spawn_all(|comm| {
            let value = f(comm);
            (true, value)
        })?;
        Ok(outcome.values)
    }

    /// Like [`run`](Self::run) for fallible rank bodies: returns every rank's value, or the error of
    /// the rank that failed **first** (the root cause; the others usually fail because it left).
    pub fn run_fallible<T, E, F>(&self, f: F) -> Result<Vec<T>, E>
    where
        T: Send,
        E: Send + From<CommError>,
        F: Fn(&ThreadComm) -> Result<T, E> + Sync,
    {
        let outcome = self.spawn_all(|comm| {
            let result = f(comm);
            (result.is_ok(), result)
        })?;
        let mut results: Vec<Option<Result<T, E>>> = outcome.values.into_iter().map(Some).collect();
        for rank in outcome.failure_order {
            if let Some(Err(error)) = results[rank].take() {
                return Err(error);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(Ok(value)) => value,
                _ => unreachable!("every failed rank is in the failure order"),
            })
            .collect())
    }

    fn spawn_all<T, F>(&self, body: F) -> CommResult<GroupOutcome<T>>
    where
        T: Send,
        F: Fn(&ThreadComm) -> (bool, T) + Sync,
    {
        let shared = Arc::new(Shared::new(self.world_size, self.timeout));
        let joined: Vec<Result<T, String>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..self.world_size)
                .map(|rank| {
                    let comm = ThreadComm {
                        rank,
                        shared: Arc::clone(&shared),
                    };
                    let body = &body;
                    thread::Builder::new()
                        .name(format!("c2n-rank-{rank}"))
                        .spawn_scoped(scope, move || {
                            // Records the exit even when `body` panics, so waiting peers wake up.
                            let mut guard = ExitGuard {
                                comm: &comm,
                                ok: false,
                            };
                            let (ok, value) = body(&comm);
                            guard.ok = ok;
                            value
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|spawned| match spawned {
                    Ok(handle) => handle.join().map_err(panic_message),
                    Err(e) => Err(format!("could not spawn the thread: {e}")),
                })
                .collect()
        });
        let failure_order = shared.lock().failure_order.clone();
        let mut values = Vec::with_capacity(joined.len());
        let mut panics = Vec::new();
        for (rank, result) in joined.into_iter().enumerate() {
            match result {
                Ok(value) => values.push(value),
                Err(message) => panics.push(CommError::RankPanicked { rank, message }),
            }
        }
        if !panics.is_empty() {
            // Report the panic that happened first.
            let first = failure_order
                .iter()
                .find_map(|r| {
                    panics.iter().position(
                        |p| matches!(p, CommError::RankPanicked { rank, .. } if rank == r),
                    )
                })
                .unwrap_or(0);
            return Err(panics.swap_remove(first));
        }
        Ok(GroupOutcome {
            values,
            failure_order,
        })
    }
}

struct GroupOutcome<T> {
    values: Vec<T>,
    failure_order: Vec<usize>,
}

pub(super) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// One rank of a [`ThreadGroup`]; handed to the rank's closure.
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ThreadComm {
    // The shared state holds whole gradient buffers: print only who this is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadComm")
            .field("rank", &self.rank)
            .field("world_size", &self.shared.world_size)
            .finish()
    }
}

struct ExitGuard<'a> {
    comm: &'a ThreadComm,
    ok: bool,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let ok = self.ok && !thread::panicking();
        let mut state = self.comm.shared.lock();
        state.exited[self.comm.rank] = true;
        if !ok {
            state.failure_order.push(self.comm.rank);
        }
        drop(state);
        self.comm.shared.wake.notify_all();
    }
}

struct Shared {
    world_size: usize,
    timeout: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// Number of completed collectives.
    generation: u64,
    slots: Vec<Option<Contribution>>,
    arrived: usize,
    /// Outcome of the collective that completed last.
    outcome: Option<Arc<Outcome>>,
    /// Set once; every rank waiting now or later fails with it.
    failure: Option<String>,
    exited: Vec<bool>,
    /// Ranks that returned an error or panicked, in the order they did.
    failure_order: Vec<usize>,
    /// Buffers of finished all-reduces, reused so that big gradients are not re-allocated (and
    /// page-faulted in) at every step.
    spare: Vec<Vec<f32>>,
}

enum Contribution {
    AllReduce { op: ReduceOp, data: Vec<f32> },
    BroadcastRoot(Vec<f32>),
    BroadcastLeaf { len: usize },
    Gather(Vec<String>),
    Barrier,
}

impl Contribution {
    fn op_name(&self) -> &'static str {
        match self {
            Contribution::AllReduce { .. } => "all_reduce",
            Contribution::BroadcastRoot(_) | Contribution::BroadcastLeaf { .. } => "broadcast",
            Contribution::Gather(_) => "gather_strings",
            Contribution::Barrier => "barrier",
        }
    }

    fn describe(&self) -> String {
        match self {
            Contribution::AllReduce { op, data } => {
                format!("all_reduce({}, len {})", op.name(), data.len())
            }
            Contribution::BroadcastRoot(data) => format!("broadcast(len {})", data.len()),
            Contribution::BroadcastLeaf { len } => format!("broadcast(len {len})"),
            Contribution::Gather(_) => "gather_strings".to_string(),
            Contribution::Barrier => "barrier".to_string(),
        }
    }
}

enum Outcome {
    Floats(Vec<f32>),
    Strings(Vec<Vec<String>>),
    Done,
}

impl Shared {
    fn new(world_size: usize, timeout: Duration) -> Self {
        Self {
            world_size,
            timeout,
            state: Mutex::new(State {
                generation: 0,
                slots: (0..world_size).map(|_| None).collect(),
                arrived: 0,
                outcome: None,
                failure: None,
                exited: vec![false; world_size],
                failure_order: Vec::new(),
                spare: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    /// Locks the state; a poisoned lock is still consistent because no code panics while holding it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ThreadComm {
    fn collective(&self, contribution: Contribution) -> CommResult<Arc<Outcome>> {
        let op = contribution.op_name();
        let shared = &*self.shared;
        let mut state = shared.lock();
        self.check_alive(&state, op)?;
        let generation = state.generation;
        state.slots[self.rank] = Some(contribution);
        state.arrived += 1;
        if state.arrived == shared.world_size {
            let slots: Vec<Contribution> =
                state.slots.iter_mut().filter_map(Option::take).collect();
            state.arrived = 0;
            let combined = combine(slots, &mut state.spare);
            return match combined {
                Ok(outcome) => {
                    let outcome = Arc::new(outcome);
                    // Every rank has dropped its handle on the previous outcome by now (it is here).
                    if let Some(previous) = state.outcome.replace(Arc::clone(&outcome)) {
                        if let Ok(Outcome::Floats(buffer)) = Arc::try_unwrap(previous) {
                            recycle(&mut state.spare, buffer, shared.world_size);
                        }
                    }
                    state.generation += 1;
                    drop(state);
                    shared.wake.notify_all();
                    Ok(outcome)
                }
                Err(message) => {
                    state.failure = Some(message.clone());
                    drop(state);
                    shared.wake.notify_all();
                    Err(CommError::Mismatch(message))
                }
            };
        }
        let started = Instant::now();
        let deadline = started + shared.timeout;
        loop {
            if state.generation != generation {
                return Ok(Arc::clone(
                    state
                        .outcome
                        .as_ref()
                        .expect("a completed collective always leaves an outcome"),
                ));
            }
            self.check_alive(&state, op)?;
            let now = Instant::now();
            if now >= deadline {
                let arrived = state.arrived;
                let missing: Vec<usize> = (0..shared.world_size)
                    .filter(|&r| state.slots[r].is_none())
                    .collect();
                state.failure = Some(format!(
                    "rank {} timed out after {:?} in `{op}` waiting for ranks {missing:?}",
                    self.rank, shared.timeout
                ));
                drop(state);
                shared.wake.notify_all();
                return Err(CommError::Timeout {
                    rank: self.rank,
                    op,
                    waited: started.elapsed(),
                    arrived,
                    world_size: shared.world_size,
                });
            }
            state = shared
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Fails if the group already failed or a rank left: then this collective can never complete.
    /// A copy of `values` in a recycled buffer when one is available.
    fn staged(&self, values: &[f32]) -> Vec<f32> {
        let reused = {
            let mut state = self.shared.lock();
            // The smallest spare that fits, else the largest (it grows once and is then reused).
            let fits = |b: &Vec<f32>| b.capacity() >= values.len();
            let pick = state
                .spare
                .iter()
                .enumerate()
                .filter(|(_, b)| fits(b))
                .min_by_key(|(_, b)| b.capacity())
                .or_else(|| {
                    state
                        .spare
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, b)| b.capacity())
                })
                .map(|(i, _)| i);
            pick.map(|i| state.spare.swap_remove(i))
        };
        let mut buffer = reused.unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(values);
        buffer
    }

    fn check_alive(&self, state: &State, op: &'static str) -> CommResult<()> {
        if let Some(reason) = &state.failure {
            return Err(CommError::PeerFailed {
                rank: self.rank,
                op,
                reason: reason.clone(),
            });
        }
        if let Some(gone) = state.exited.iter().position(|&e| e) {
            let how = if state.failure_order.contains(&gone) {
                "failed"
            } else {
                "returned"
            };
            return Err(CommError::PeerFailed {
                rank: self.rank,
                op,
                reason: format!("rank {gone} {how} before joining this collective"),
            });
        }
        Ok(())
    }
}

/// Keeps at most `world_size + 1` spare buffers.
fn recycle(spare: &mut Vec<Vec<f32>>, buffer: Vec<f32>, world_size: usize) {
    if spare.len() <= world_size {
        spare.push(buffer);
    }
}

/// Combines one contribution per rank (in rank order) or explains why they do not match.
fn combine(slots: Vec<Contribution>, spare: &mut Vec<Vec<f32>>) -> Result<Outcome, String> {
    let world_size = slots.len();
    let first = &slots[0];
    let mismatch = || {
        let calls: Vec<String> = slots
            .iter()
            .enumerate()
            .map(|(r, c)| format!("rank {r}: {}", c.describe()))
            .collect();
        format!("ranks called different collectives: {}", calls.join("; "))
    };
    match first {
        Contribution::AllReduce { op, data } => {
            let (op, len) = (*op, data.len());
            let same = slots.iter().all(
                |c| matches!(c, Contribution::AllReduce { op: o, data } if *o == op && data.len() == len),
            );
            if !same {
                return Err(mismatch());
            }
            let mut parts = slots.into_iter().map(|c| match c {
                Contribution::AllReduce { data, .. } => data,
                _ => unreachable!("checked above"),
            });
            let mut acc = parts.next().unwrap_or_default();
            for part in parts {
                for (a, b) in acc.iter_mut().zip(&part) {
                    *a += *b;
                }
                recycle(spare, part, world_size);
            }
            if op == ReduceOp::Avg {
                let n = world_size as f32;
                acc.iter_mut().for_each(|a| *a /= n);
            }
            Ok(Outcome::Floats(acc))
        }
        Contribution::BroadcastRoot(data) => {
            let len = data.len();
            let same = slots[1..]
                .iter()
                .all(|c| matches!(c, Contribution::BroadcastLeaf { len: l } if *l == len));
            if !same {
                return Err(mismatch());
            }
            match slots.into_iter().next() {
                Some(Contribution::BroadcastRoot(data)) => Ok(Outcome::Floats(data)),
                _ => unreachable!("checked above"),
            }
        }
        Contribution::Gather(_) => {
            if !slots.iter().all(|c| matches!(c, Contribution::Gather(_))) {
                return Err(mismatch());
            }
            Ok(Outcome::Strings(
                slots
                    .into_iter()
                    .map(|c| match c {
                        Contribution::Gather(items) => items,
                        _ => unreachable!("checked above"),
                    })
                    .collect(),
            ))
        }
        Contribution::Barrier => {
            if !slots.iter().all(|c| matches!(c, Contribution::Barrier)) {
                return Err(mismatch());
            }
            Ok(Outcome::Done)
        }
        Contribution::BroadcastLeaf { .. } => Err(mismatch()),
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world_size
    }

    fn backend(&self) -> Backend {
        Backend::Threads
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> CommResult<()> {
        if self.shared.world_size == 1 {
            return Ok(()); // sum and average over one rank are the identity
        }
        let outcome = self.collective(Contribution::AllReduce {
            op,
            data: self.staged(buf),
        })?;
        match &*outcome {
            Outcome::Floats(result) => buf.copy_from_slice(result),
            _ => unreachable!("an all_reduce completes with floats"),
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32]) -> CommResult<()> {
        if self.shared.world_size == 1 {
            return Ok(());
        }
        let contribution = if self.rank == 0 {
            Contribution::BroadcastRoot(self.staged(buf))
        } else {
            Contribution::BroadcastLeaf { len: buf.len() }
        };
        let outcome = self.collective(contribution)?;
        if self.rank != 0 {
            match &*outcome {
                Outcome::Floats(result) => buf.copy_from_slice(result),
                _ => unreachable!("a broadcast completes with floats"),
            }
        }
        Ok(())
    }

    fn barrier(&self) -> CommResult<()> {
        self.collective(Contribution::Barrier).map(|_| ())
    }

    fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>> {
        let outcome = self.collective(Contribution::Gather(items.to_vec()))?;
        if self.rank != 0 {
            return Ok(None);
        }
        match &*outcome {
            Outcome::Strings(per_rank) => Ok(Some(per_rank.clone())),
            _ => unreachable!("a gather completes with strings"),
        }
    }
}
