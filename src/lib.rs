//! The root package of the nemo-mqtt workspace. It has no code of its own: it
//! owns the end-to-end tests in `tests/` (real redis-server and mosquitto,
//! started by `nemo-testkit`) and the benchmarks in `benches/`.
//!
//! The crates are in `crates/`, the binaries (`bridge`, `monitor`, `replay`) in `bins/`.
