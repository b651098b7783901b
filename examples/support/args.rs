//! The examples' command lines: `--flag value` or `--flag=value`, `--help`
//! or `-h` for the usage text, which every error message ends with.

use std::fmt::Display;
use std::str::FromStr;

/// The arguments after the program's name.
pub struct Args {
    args: std::iter::Skip<std::env::Args>,
    usage: &'static str,
}

/// A flag and its value, as given.
pub struct Flag {
    pub name: String,
    pub value: String,
    usage: &'static str,
}

impl Args {
    /// This process's arguments; `usage` is printed by `--help` and ends
    /// every error.
    pub fn new(usage: &'static str) -> Self {
        Self {
            args: std::env::args().skip(1),
            usage,
        }
    }

    /// The next argument. `--help` or `-h` prints the usage and exits.
    pub fn next_arg(&mut self) -> Option<String> {
        let arg = self.args.next()?;
        if arg == "--help" || arg == "-h" {
            println!("{}", self.usage);
            std::process::exit(0);
        }
        Some(arg)
    }

    /// `arg` as a flag with a value: the part after its `=`, or else the
    /// next argument.
    pub fn flag(&mut self, arg: String) -> Result<Flag, String> {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = self
                    .args
                    .next()
                    .ok_or_else(|| format!("{arg} needs a value\n{}", self.usage))?;
                (arg, value)
            }
        };
        Ok(Flag {
            name,
            value,
            usage: self.usage,
        })
    }

    /// The next argument as a flag with a value ([`next_arg`](Self::next_arg),
    /// then [`flag`](Self::flag)); `None` at the end.
    pub fn next_flag(&mut self) -> Result<Option<Flag>, String> {
        match self.next_arg() {
            Some(arg) => self.flag(arg).map(Some),
            None => Ok(None),
        }
    }
}

impl Flag {
    /// The value, parsed; an error names the flag, the value and why.
    pub fn parse<T: FromStr>(&self) -> Result<T, String>
    where
        T::Err: Display,
    {
        self.parse_with(str::parse)
    }

    /// The value, parsed by `parse`; an error as [`parse`](Self::parse)'s.
    pub fn parse_with<T, E: Display>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, String> {
        parse(&self.value).map_err(|e| format!("{} {}: {e}\n{}", self.name, self.value, self.usage))
    }

    /// The error for a flag that the example does not know.
    pub fn unknown(&self) -> String {
        format!("unknown flag {}\n{}", self.name, self.usage)
    }
}
