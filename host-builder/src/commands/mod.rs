//! One module per subcommand group, each with a `run()`.

pub mod query;
pub mod scan;
pub mod store;
pub mod system;
pub mod vm;
