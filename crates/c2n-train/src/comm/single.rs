//! The one-rank communicator: every collective is the identity.

use super::{Backend, CommResult, Communicator, ReduceOp};

/// World size 1. All-reduce (sum or average over one rank), broadcast and barrier change nothing.
///
/// ```
/// use c2n_train::comm::{Communicator, ReduceOp, SingleComm};
/// let mut g = vec![1.0, 2.0];
/// SingleComm.all_reduce(&mut g, ReduceOp::Avg).unwrap();
/// assert_eq!(g, vec![1.0, 2.0]);
/// assert_eq!(SingleComm.gather_strings(&["a".into()]).unwrap(), Some(vec![vec!["a".to_string()]]));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleComm;

impl Communicator for SingleComm {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn backend(&self) -> Backend {
        Backend::Single
    }

    fn all_reduce(&self, _buf: &mut [f32], _op: ReduceOp) -> CommResult<()> {
        Ok(())
    }

    fn broadcast(&self, _buf: &mut [f32]) -> CommResult<()> {
        Ok(())
    }

    fn barrier(&self) -> CommResult<()> {
        Ok(())
    }

    fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>> {
        Ok(Some(vec![items.to_vec()]))
    }
}
