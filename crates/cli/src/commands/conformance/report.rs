//! The verdicts, one line per case, or as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseResult {
    pub(crate) name: String,
    /// What the case proves, in a sentence.
    pub(crate) checks: String,
    pub(crate) ok: bool,
    /// What was seen: the outcome when it passed, every shortfall when it failed.
    pub(crate) detail: String,
}

impl CaseResult {
    pub(crate) fn passed(name: &str, checks: &str, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            checks: checks.to_owned(),
            ok: true,
            detail,
        }
    }

    pub(crate) fn failed(name: &str, checks: &str, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            checks: checks.to_owned(),
            ok: false,
            detail,
        }
    }
}

pub(crate) struct Report {
    pub(crate) subject: String,
    pub(crate) subject_log: PathBuf,
    pub(crate) cases: Vec<CaseResult>,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        self.cases.iter().all(|case| case.ok)
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "subject": self.subject,
            "subject_log": self.subject_log,
            "passed": self.passed(),
            "cases": self.cases,
        })
    }

    pub(crate) fn to_text(&self) -> String {
        let mut text = String::new();
        let width = self
            .cases
            .iter()
            .map(|case| case.name.len())
            .max()
            .unwrap_or(0);
        for case in &self.cases {
            let verdict = if case.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(text, "{verdict} {:width$}  {}", case.name, case.checks);
            let _ = writeln!(text, "     {:width$}  {}", "", case.detail);
        }
        if self.passed() {
            let _ = writeln!(
                text,
                "conformance: all {} cases passed for {}",
                self.cases.len(),
                self.subject
            );
        }
        text
    }
}
