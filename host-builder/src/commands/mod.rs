//! One module per subcommand group, each with a `run()`.

pub mod store;
