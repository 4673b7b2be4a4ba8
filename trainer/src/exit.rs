//! How a command fails: the user's input (exit 2, as clap does for bad flags) or the run itself (1).

/// A failed command and whose fault it is.
#[derive(Debug)]
pub enum Failure {
    /// Invalid flags, configs or files: status 2, nothing was written.
    Input(anyhow::Error),
    /// The run failed on valid input: status 1.
    Run(anyhow::Error),
}

impl Failure {
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Input(e) | Failure::Run(e) => e,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Input(_) => 2,
            Failure::Run(_) => 1,
        }
    }
}

/// Marks an error as the user's input being at fault.
pub trait InputContext<T> {
    fn input_error(self, context: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> InputContext<T> for Result<T, E> {
    fn input_error(self, context: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure::Input(e.into().context(context())))
    }
}
