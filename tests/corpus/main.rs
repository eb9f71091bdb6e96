//! Stored inputs replayed: the fuzz corpus and every input a fuzzer flagged (cargo feature
//! `fuzzing`), and robot detection measured on real User-Agent lists.

mod fuzz_regressions;
mod robots;
