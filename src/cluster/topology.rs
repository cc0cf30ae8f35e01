//! The grid of ranks: `D` data-parallel groups of `M` model-parallel ranks.

use super::{Comm, SelfComm};
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// `D x M`: `D` groups each hold a whole model and take a share of every batch; inside a group
/// `M` ranks each hold a chunk of every layer's neurons. `1xP` is the seed's model parallelism,
/// `Px1` plain data parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Data-parallel groups.
    pub data: usize,
    /// Model-parallel ranks per group.
    pub model: usize,
}

impl Grid {
    /// Model parallelism over `ranks` ranks.
    pub fn model(ranks: usize) -> Self {
        Grid {
            data: 1,
            model: ranks,
        }
    }

    /// Data parallelism over `ranks` ranks.
    pub fn data(ranks: usize) -> Self {
        Grid {
            data: ranks,
            model: 1,
        }
    }

    /// Number of ranks the grid needs.
    pub fn ranks(&self) -> usize {
        self.data * self.model
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.data, self.model)
    }
}

impl FromStr for Grid {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a grid: expected DxM with D, M >= 1 (e.g. 2x4)");
        let (d, m) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let d: usize = d.trim().parse().map_err(|_| bad())?;
        let m: usize = m.trim().parse().map_err(|_| bad())?;
        if d == 0 || m == 0 {
            return Err(bad());
        }
        Ok(Grid { data: d, model: m })
    }
}

/// The communicators of one rank in a [`Grid`]: world rank `w` is in data group `w / M` at
/// model position `w % M`, so a model group is a block of consecutive ranks (one node, with
/// the usual by-slot mapping) — it is the group that talks at every layer.
#[derive(Clone, Debug)]
pub struct Topology<C: Comm> {
    /// Every rank.
    pub world: C,
    /// The ranks at the same model position in every data group (gradients are summed here).
    pub data: C,
    /// The ranks of this rank's data group (activations are gathered here).
    pub model: C,
}

impl Topology<SelfComm> {
    /// One process.
    pub fn single() -> Self {
        Topology {
            world: SelfComm,
            data: SelfComm,
            model: SelfComm,
        }
    }
}

impl<C: Comm> Topology<C> {
    /// Splits `world` into `grid`; the grid must use every rank.
    pub fn new(world: C, grid: Grid) -> Result<Self> {
        if grid.ranks() != world.size() {
            return Err(Error::parameter(
                "grid",
                format!(
                    "{grid} needs {} ranks, but the job has {}",
                    grid.ranks(),
                    world.size()
                ),
            ));
        }
        let (d, m) = (world.rank() / grid.model, world.rank() % grid.model);
        let model = world.split(d, m);
        let data = world.split(m, d);
        Ok(Topology { world, data, model })
    }

    /// The grid.
    pub fn grid(&self) -> Grid {
        Grid {
            data: self.data.size(),
            model: self.model.size(),
        }
    }

    /// Whether this is world rank 0, the one that reads, prints and writes.
    pub fn is_root(&self) -> bool {
        self.world.rank() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_and_print() {
        assert_eq!("2x3".parse::<Grid>(), Ok(Grid { data: 2, model: 3 }));
        assert_eq!("1X4".parse::<Grid>().map(|g| g.ranks()), Ok(4));
        assert_eq!(Grid::data(3).to_string(), "3x1");
        for bad in ["", "2", "0x2", "2x0", "ax2", "2x3x4"] {
            assert!(bad.parse::<Grid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grid_must_use_every_rank() {
        let err = Topology::new(SelfComm, Grid::model(2)).unwrap_err();
        assert!(err.to_string().contains("needs 2 ranks"), "{err}");
        assert_eq!(
            Topology::new(SelfComm, Grid::model(1)).unwrap().grid(),
            Grid::model(1)
        );
    }
}
