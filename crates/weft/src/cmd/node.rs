//! `weft node`: the per-node proxy. Its command line lives in `weft_node::cli`, shared
//! with the `weft-node` binary, so both take exactly the same flags.

pub use weft_node::cli::{NodeArgs as Args, run};
