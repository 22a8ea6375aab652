//! Shared parts of the integration tests. Each test binary compiles its own copy, so unused
//! items are normal: every module allows dead_code itself (`#![allow(dead_code)]`).

pub mod cm;
pub mod hsm;
pub mod run;
pub mod secrets;
pub mod stack;
