//! Problems found in a config file, each with its YAML path, so `modelmux check` and a
//! reload can list every one of them at once.

use std::fmt;

/// One problem found in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Problems {
    pub fn one(message: impl Into<String>) -> Problems {
        Problems(vec![Problem {
            path: String::new(),
            message: message.into(),
        }])
    }
}

/// Collects problems while a config is loaded.
pub(super) trait Report {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>);
}

impl Report for Vec<Problem> {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}
