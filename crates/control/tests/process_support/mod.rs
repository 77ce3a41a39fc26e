//! Shared by the control-plane process tests (`process_*.rs`, `scale_*.rs`) and the
//! control-plane bench example: the real process started in-process, a delta xDS client
//! written against the wire spec alone, many such clients at once, and generated meshes.
#![allow(dead_code)]

pub mod client;
pub mod control;
pub mod mesh;
pub mod swarm;
