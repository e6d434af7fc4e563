//! Problems found in user input, each with where it is and how to fix it.
//!
//! Validation never stops at the first problem: it gathers every [`Problem`] of a file into a
//! [`Diagnostics`] so that the user fixes them all in one pass.

use serde::Serialize;
use std::fmt;

/// Whether a problem stops the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Stops the build.
    Error,
    /// Printed, but the build goes on.
    Warning,
}

/// One problem in the topology file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// YAML path, like `members[1].address`; empty for the whole document.
    pub path: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
    /// How to fix it.
    pub help: String,
}

/// Every problem found in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    /// The file as the user named it.
    pub file: String,
    /// Problems in file order.
    pub problems: Vec<Problem>,
}

impl Diagnostics {
    /// Starts an empty list for `file`.
    pub fn new(file: impl Into<String>) -> Diagnostics {
        Diagnostics { file: file.into(), problems: Vec::new() }
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    /// Adds a problem.
    pub fn push(
        &mut self,
        severity: Severity,
        path: &str,
        at: Option<(usize, usize)>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems.push(Problem {
            severity,
            path: path.to_string(),
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            message: message.into(),
            help: help.into(),
        });
    }

    /// Orders problems by line so the report reads like the file.
    pub fn sort(&mut self) {
        self.problems.sort_by_key(|p| (p.line.unwrap_or(0), p.column.unwrap_or(0)));
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Warning)
    }
}

impl Problem {
    /// `file:line:col: severity: path: message` plus an indented help line.
    pub fn render(&self, file: &str) -> String {
        let place = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
            (Some(l), None) => format!("{file}:{l}"),
            _ => file.to_string(),
        };
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let path = if self.path.is_empty() { String::new() } else { format!("{}: ", self.path) };
        let mut out = format!("{sev}: {place}: {path}{}", self.message);
        if !self.help.is_empty() {
            out.push_str(&format!("\n  help: {}", self.help));
        }
        out
    }
}

/// The most problems a report prints; the rest are counted.
pub const MAX_SHOWN: usize = 50;

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.problems.iter().take(MAX_SHOWN) {
            writeln!(f, "{}", p.render(&self.file))?;
        }
        if self.problems.len() > MAX_SHOWN {
            writeln!(
                f,
                "... and {} more problem(s) not shown; fix these first",
                self.problems.len() - MAX_SHOWN
            )?;
        }
        let errors = self.error_count();
        let warnings = self.problems.len() - errors;
        if errors > 0 {
            write!(f, "{}: {errors} error(s), {warnings} warning(s)", self.file)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_report_stops_at_fifty_and_counts_the_rest() {
        let mut d = Diagnostics::new("t.yaml");
        for i in 0..60 {
            d.push(Severity::Error, "members", Some((i + 1, 1)), format!("problem {i}"), "fix it");
        }
        let text = d.to_string();
        assert!(text.contains("problem 49") && !text.contains("problem 50"));
        assert!(text.contains("... and 10 more problem(s) not shown"));
        assert!(text.ends_with("t.yaml: 60 error(s), 0 warning(s)"));
    }
}
