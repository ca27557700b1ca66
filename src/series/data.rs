//! Observed series: one or more trajectories, each at its own (irregular) times, with
//! missing values.
//!
//! The CSV form has a header; one column is the time (the first, unless named), one
//! optional column names the trajectory each row belongs to (a column called `id` or
//! `trajectory`, unless named), and every other column is a state, named by its header.
//! An empty cell, `nan` or `NA` is a value not observed. Within a trajectory, rows are in
//! increasing time with no time repeated; trajectories may be interleaved.

use std::path::Path;

use crate::data::io::{file_name, open_for_reading};

/// One trajectory: its observations `y` (`times × d`, row-major, NaN = not observed).
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// Its name (the id column's value; "1" when there is no id column).
    pub id: String,
    /// Observation times, strictly increasing.
    pub t: Vec<f64>,
    /// Observations, `t.len() × d`.
    pub y: Vec<f64>,
    /// The file line of each row (0 when not read from a file).
    pub lines: Vec<usize>,
}

impl Trajectory {
    /// A trajectory from times and rows (no file lines).
    pub fn new(id: &str, t: Vec<f64>, y: Vec<f64>) -> Self {
        let lines = vec![0; t.len()];
        Trajectory {
            id: id.to_string(),
            t,
            y,
            lines,
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize, d: usize) -> &[f64] {
        &self.y[i * d..(i + 1) * d]
    }
}

/// A set of observed trajectories of the same states.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The time column's name.
    pub time_name: String,
    /// The states' names.
    pub names: Vec<String>,
    /// The trajectories, in order of first appearance.
    pub trajectories: Vec<Trajectory>,
}

/// Why a series file cannot be used; every message names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// The file could not be opened (the message names it).
    #[error("{0}")]
    Open(String),
    /// The file could not be read.
    #[error("{file}: {message}")]
    Io {
        /// File name.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A problem at a line.
    #[error("{file}:{line}: {message}")]
    At {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

fn is_missing(s: &str) -> bool {
    matches!(s, "" | "nan" | "NaN" | "NAN" | "NA" | "na")
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

impl Series {
    /// Number of states.
    pub fn dim(&self) -> usize {
        self.names.len()
    }

    /// Total number of observed values.
    pub fn n_observed(&self) -> usize {
        self.trajectories
            .iter()
            .map(|tr| tr.y.iter().filter(|v| !v.is_nan()).count())
            .sum()
    }

    /// The latest observation time.
    pub fn t_max(&self) -> f64 {
        self.trajectories
            .iter()
            .filter_map(|tr| tr.t.last().copied())
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Reads a series from a CSV file; `time` and `id` name those columns (the first
    /// column and a column named `id` or `trajectory` by default).
    pub fn read_csv(path: &Path, time: Option<&str>, id: Option<&str>) -> Result<Self, SeriesError> {
        let file = file_name(path);
        let mut reader = open_for_reading(path).map_err(|e| SeriesError::Open(e.to_string()))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).map_err(|e| SeriesError::Io {
            file: file.clone(),
            message: format!("cannot read it as UTF-8 text: {e}"),
        })?;
        Self::parse_csv(&text, &file, time, id)
    }

    /// [`Series::read_csv`] on text already read; `file` names it in errors.
    pub fn parse_csv(text: &str, file: &str, time: Option<&str>, id: Option<&str>) -> Result<Self, SeriesError> {
        let at = |line: usize, message: String| SeriesError::At {
            file: file.to_string(),
            line,
            message,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let (header_line, header) = lines.next().ok_or_else(|| SeriesError::Io {
            file: file.to_string(),
            message: "no data: give a header 't,x1,…' and one row per observation".into(),
        })?;
        let names: Vec<String> = header.split(',').map(|s| unquote(s).to_string()).collect();
        if names.iter().any(|n| n.parse::<f64>().is_ok()) {
            return Err(at(
                header_line,
                "the first row must be a header naming the columns (e.g. 't,x,y'), not numbers".into(),
            ));
        }
        for (k, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(at(header_line, format!("column {} has no name in the header", k + 1)));
            }
            if names[..k].contains(n) {
                return Err(at(
                    header_line,
                    format!("column name '{n}' appears twice in the header"),
                ));
            }
        }
        let find = |what: &str, name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                at(
                    header_line,
                    format!("no {what} column '{name}' in the header ({})", names.join(", ")),
                )
            })
        };
        let t_col = match time {
            Some(name) => find("time", name)?,
            None => 0,
        };
        let id_col = match id {
            Some(name) => Some(find("trajectory id", name)?),
            None => names
                .iter()
                .position(|n| n.eq_ignore_ascii_case("id") || n.eq_ignore_ascii_case("trajectory")),
        };
        if id_col == Some(t_col) {
            return Err(at(
                header_line,
                "the time and trajectory-id columns are the same column".into(),
            ));
        }
        let state_cols: Vec<usize> = (0..names.len()).filter(|&k| k != t_col && Some(k) != id_col).collect();
        if state_cols.is_empty() {
            return Err(at(
                header_line,
                "no state columns: give at least one column besides the time".into(),
            ));
        }
        let d = state_cols.len();
        let mut trajectories: Vec<Trajectory> = Vec::new();
        for (line, row) in lines {
            let fields: Vec<&str> = row.split(',').map(unquote).collect();
            if fields.len() != names.len() {
                return Err(at(
                    line,
                    format!("{} columns, the header has {}", fields.len(), names.len()),
                ));
            }
            let t_text = fields[t_col];
            let t: f64 = t_text.parse().ok().filter(|t: &f64| t.is_finite()).ok_or_else(|| {
                at(
                    line,
                    format!(
                        "time '{}' is not a finite number (every row needs its time)",
                        crate::data::csv_io::shown(t_text)
                    ),
                )
            })?;
            let id = id_col.map_or("1", |c| fields[c]).to_string();
            let mut values = Vec::with_capacity(d);
            for &c in &state_cols {
                let s = fields[c];
                if is_missing(s) {
                    values.push(f64::NAN);
                    continue;
                }
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => values.push(v),
                    _ => {
                        return Err(at(
                            line,
                            format!(
                            "column '{}': '{}' is not a finite number (leave it empty or write nan if not observed)",
                            names[c],
                            crate::data::csv_io::shown(s)
                        ),
                        ))
                    }
                }
            }
            let k = match trajectories.iter().position(|tr| tr.id == id) {
                Some(k) => k,
                None => {
                    trajectories.push(Trajectory {
                        id: id.clone(),
                        t: Vec::new(),
                        y: Vec::new(),
                        lines: Vec::new(),
                    });
                    trajectories.len() - 1
                }
            };
            let tr = &mut trajectories[k];
            if let Some(&prev) = tr.t.last() {
                if t <= prev {
                    let what = if t == prev { "repeats" } else { "is before" };
                    return Err(at(
                        line,
                        format!(
                            "time {t} {what} the previous time {prev} of trajectory '{id}' (line {}): sort each \
                             trajectory's rows by time, one row per time",
                            tr.lines.last().copied().unwrap_or(0)
                        ),
                    ));
                }
            }
            tr.t.push(t);
            tr.y.extend(values);
            tr.lines.push(line);
        }
        if trajectories.is_empty() {
            return Err(SeriesError::Io {
                file: file.to_string(),
                message: "a header but no rows".into(),
            });
        }
        Ok(Series {
            time_name: names[t_col].clone(),
            names: state_cols.iter().map(|&c| names[c].clone()).collect(),
            trajectories,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectories_are_grouped_and_missing_values_kept() {
        let csv = "t,id,x,y\n0,a,1,2\n0,b,3,4\n\n0.5,a,,2.5\n0.7,b,nan,1\n";
        let s = Series::parse_csv(csv, "obs.csv", None, None).unwrap();
        assert_eq!(s.names, ["x", "y"]);
        assert_eq!(s.trajectories.len(), 2);
        assert_eq!(s.trajectories[0].t, [0.0, 0.5]);
        assert!(s.trajectories[0].y[2].is_nan());
        assert_eq!(s.trajectories[1].lines, [3, 6]);
        assert_eq!(s.n_observed(), 6);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let err = |csv: &str| Series::parse_csv(csv, "obs.csv", None, None).unwrap_err().to_string();
        assert!(err("t,x\n0,1\n0,2\n").starts_with("obs.csv:3: time 0 repeats"));
        assert!(err("t,x\n1,1\n0.5,2\n").contains("is before"));
        assert!(err("t,x\nnan,1\n").starts_with("obs.csv:2: time 'nan'"));
        assert!(err("t,x\n0,1,2\n").starts_with("obs.csv:2: 3 columns"));
        assert!(err("t,x\n0,abc\n").contains("column 'x': 'abc'"));
        assert!(err("0,1\n").contains("header"));
    }
}
