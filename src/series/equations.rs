//! Mechanistic right-hand sides typed as equations, `"dx = a*x - b*x*y; dy = -d*y + g*x*y"`,
//! parsed by `exmex` (which also differentiates them symbolically).
//!
//! Each statement is `dNAME = expression` (or `dNAME/dt = …`), separated by `;` or new
//! lines; `#` starts a comment. An expression may use the state names, the parameter
//! names, `t`, numbers (`1e4` and `2.5e-3` included), `+ - * / ^`, and exmex's functions
//! (`sin`, `cos`, `exp`, `log`, `sqrt`, `tanh`, `abs`, …) and constants (`PI`, `E`).
//! Before parsing, every state, parameter and `t` is written as `{name}` (so a state
//! named `e` or `sin` is a variable, not a constant or function) and every number in
//! plain decimal (exmex reads no exponents).
//!
//! The partial derivatives `∂fᵢ/∂yⱼ` and `∂fᵢ/∂pₖ` are exmex's symbolic ones, made once at
//! parse time; the VJP is their weighted sum.

use exmex::prelude::*;
use exmex::Differentiate;

use super::model::Mechanistic;
use super::tape::Tape;
use crate::ode::{Jacobian, OdeSystem};

/// Why equations could not be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EquationError {
    /// A statement is not `dNAME = expression`.
    #[error("equation {index} ('{text}') is not of the form 'dNAME = expression'")]
    Form {
        /// 1-based statement number.
        index: usize,
        /// The statement, cut to 60 characters.
        text: String,
    },
    /// The left-hand side names no state.
    #[error("equation {index} is for '{lhs}', but the states are {states}: write 'dNAME = …' with NAME one of them")]
    UnknownState {
        /// 1-based statement number.
        index: usize,
        /// The left-hand side as written.
        lhs: String,
        /// The state names, comma-separated.
        states: String,
    },
    /// Two statements for one state.
    #[error("equations {first} and {second} are both for d{state}: give one equation per state")]
    Duplicate {
        /// The state.
        state: String,
        /// Its first statement.
        first: usize,
        /// The repeat.
        second: usize,
    },
    /// A symbol that is neither a state, a parameter nor `t`.
    #[error(
        "unknown symbol '{symbol}' in the equation for d{state}: it is not a state ({states}), \
         not a parameter ({params}) and not t; give it a value with --params {symbol}=…"
    )]
    UnknownSymbol {
        /// The symbol.
        symbol: String,
        /// The equation's state.
        state: String,
        /// The states, comma-separated.
        states: String,
        /// The parameters, comma-separated (or "none").
        params: String,
    },
    /// exmex could not parse an expression.
    #[error("cannot parse the equation for d{state} ('{text}'): {message}")]
    Parse {
        /// The equation's state.
        state: String,
        /// The expression, cut to 60 characters.
        text: String,
        /// exmex's message.
        message: String,
    },
    /// A number that is not one.
    #[error("'{text}' in the equation for d{state} is not a number")]
    Number {
        /// The equation's state.
        state: String,
        /// The literal.
        text: String,
    },
}

/// One parsed right-hand side with its partial derivatives.
#[derive(Clone, Debug)]
struct Compiled {
    expr: Expr,
    /// For each of the expression's variables (exmex's alphabetical order), its slot in
    /// `[y (n), p (m), t]`.
    slots: Vec<usize>,
    /// `(slot, ∂f/∂slot)` for every variable but `t`.
    partials: Vec<(usize, Expr)>,
}

/// An exmex expression and, when it compiles, its [`Tape`] (the same values, faster).
#[derive(Clone, Debug)]
struct Expr {
    ex: FlatEx<f64>,
    tape: Option<Tape>,
}

impl Expr {
    fn new(ex: FlatEx<f64>, slots: &[usize], n_values: usize) -> Self {
        let tape = Tape::compile(&ex, slots, n_values);
        Expr { ex, tape }
    }
}

impl Compiled {
    fn eval(expr: &Expr, slots: &[usize], all: &[f64], vars: &mut Vec<f64>) -> f64 {
        if let Some(tape) = &expr.tape {
            return tape.eval(all, vars);
        }
        vars.clear();
        vars.extend(slots.iter().map(|&s| all[s]));
        // The variable count matches by construction, so eval cannot fail.
        expr.ex.eval(vars).unwrap_or(f64::NAN)
    }
}

/// A mechanistic system from equations: `dy/dt = f(t, y; p)` with named states and
/// parameters.
///
/// ```
/// use cnflow::series::{Equations, Mechanistic};
///
/// let names = ["x".to_string(), "y".to_string()];
/// let params = ["a".to_string(), "b".to_string()];
/// let mut eq = Equations::parse("dx = a*x - b*x*y; dy = -y + 2e-1*x*y", &names, &params)?;
/// let mut dy = [0.0; 2];
/// eq.rhs(0.0, &[1.0, 2.0], &[1.5, 1.0], &mut dy);
/// assert!((dy[0] - (1.5 - 2.0)).abs() < 1e-15 && (dy[1] - (-2.0 + 0.4)).abs() < 1e-15);
/// # Ok::<(), cnflow::series::EquationError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Equations {
    text: String,
    states: Vec<String>,
    params: Vec<String>,
    rhs: Vec<Option<Compiled>>,
    all: Vec<f64>,
    vars: Vec<f64>,
}

fn cut(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Rewrites `expr` for exmex: known names as `{name}`, numbers in plain decimal.
fn rewrite(expr: &str, known: &dyn Fn(&str) -> bool, state: &str) -> Result<String, EquationError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i = super::tape::number_end(&chars, i);
            let lit: String = chars[start..i].iter().collect();
            let v: f64 = lit.parse().map_err(|_| EquationError::Number {
                state: state.to_string(),
                text: lit.clone(),
            })?;
            // Rust prints floats in full decimal, which exmex reads.
            out.push_str(&format!("{v}"));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if next != Some(&'(') && known(&name) {
                out.push('{');
                out.push_str(&name);
                out.push('}');
            } else {
                out.push_str(&name);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

impl Equations {
    /// Parses `text` for the states `states` (in the data's column order) and the
    /// parameters `params`. A state with no equation has no mechanistic term (its
    /// `f` is 0, for a purely neural component).
    pub fn parse(text: &str, states: &[String], params: &[String]) -> Result<Self, EquationError> {
        let n = states.len();
        let slot_of = |name: &str| -> Option<usize> {
            if let Some(j) = states.iter().position(|s| s == name) {
                Some(j)
            } else if let Some(k) = params.iter().position(|s| s == name) {
                Some(n + k)
            } else if name == "t" {
                Some(n + params.len())
            } else {
                None
            }
        };
        let mut rhs: Vec<Option<Compiled>> = vec![None; n];
        let mut first_at = vec![0usize; n];
        let statements = text
            .split(['\n', ';'])
            .map(|s| s.split('#').next().unwrap_or("").trim())
            .filter(|s| !s.is_empty());
        for (index, stmt) in statements.enumerate().map(|(k, s)| (k + 1, s)) {
            let (lhs, expr) = stmt
                .split_once('=')
                .ok_or_else(|| EquationError::Form { index, text: cut(stmt) })?;
            let lhs = lhs.trim();
            let lhs_name = lhs.strip_suffix("/dt").unwrap_or(lhs).trim();
            let state = lhs_name
                .strip_prefix('d')
                .and_then(|s| states.iter().position(|x| x == s.trim()))
                .ok_or_else(|| EquationError::UnknownState {
                    index,
                    lhs: lhs.to_string(),
                    states: list(states),
                })?;
            if rhs[state].is_some() {
                return Err(EquationError::Duplicate {
                    state: states[state].clone(),
                    first: first_at[state],
                    second: index,
                });
            }
            first_at[state] = index;
            let name = &states[state];
            let written = rewrite(expr, &|s| slot_of(s).is_some(), name)?;
            let parsed = exmex::parse::<f64>(&written).map_err(|e| EquationError::Parse {
                state: name.clone(),
                text: cut(expr.trim()),
                message: e.to_string(),
            })?;
            let mut slots = Vec::new();
            for v in parsed.var_names() {
                let v = v.trim_start_matches('{').trim_end_matches('}');
                match slot_of(v) {
                    Some(s) => slots.push(s),
                    None => {
                        return Err(EquationError::UnknownSymbol {
                            symbol: v.to_string(),
                            state: name.clone(),
                            states: list(states),
                            params: list(params),
                        })
                    }
                }
            }
            let mut partials = Vec::new();
            for (k, &slot) in slots.iter().enumerate() {
                if slot == n + params.len() {
                    continue;
                }
                let d = parsed.clone().partial(k).map_err(|e| EquationError::Parse {
                    state: name.clone(),
                    text: cut(expr.trim()),
                    message: format!("its derivative: {e}"),
                })?;
                partials.push((slot, Expr::new(d, &slots, n + params.len() + 1)));
            }
            rhs[state] = Some(Compiled {
                expr: Expr::new(parsed, &slots, n + params.len() + 1),
                slots,
                partials,
            });
        }
        Ok(Equations {
            text: text.to_string(),
            states: states.to_vec(),
            params: params.to_vec(),
            rhs,
            all: vec![0.0; n + params.len() + 1],
            vars: Vec::new(),
        })
    }

    /// The text the equations were parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether state `j` has an equation.
    pub fn has_equation(&self, j: usize) -> bool {
        self.rhs[j].is_some()
    }

    /// The parameters the equations use (by index into the parameter list).
    pub fn used_params(&self) -> Vec<bool> {
        let n = self.states.len();
        let mut used = vec![false; self.params.len()];
        for c in self.rhs.iter().flatten() {
            for &s in &c.slots {
                if s >= n && s < n + self.params.len() {
                    used[s - n] = true;
                }
            }
        }
        used
    }

    /// The state names of equations written for themselves, in the order of their
    /// statements (`dy1 = …; dy2 = …` → `y1, y2`): for `cnflow solve`, where no data file
    /// names the states.
    pub fn states_of(text: &str) -> Result<Vec<String>, EquationError> {
        let mut names: Vec<String> = Vec::new();
        let statements = text
            .split(['\n', ';'])
            .map(|s| s.split('#').next().unwrap_or("").trim())
            .filter(|s| !s.is_empty());
        for (index, stmt) in statements.enumerate().map(|(k, s)| (k + 1, s)) {
            let (lhs, _) = stmt
                .split_once('=')
                .ok_or_else(|| EquationError::Form { index, text: cut(stmt) })?;
            let lhs = lhs.trim();
            let name = lhs.strip_suffix("/dt").unwrap_or(lhs).trim();
            let name = name.strip_prefix('d').map(str::trim).unwrap_or("");
            let ok = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !ok || name == "t" {
                return Err(EquationError::Form { index, text: cut(stmt) });
            }
            if let Some(first) = names.iter().position(|n| n == name) {
                return Err(EquationError::Duplicate {
                    state: name.to_string(),
                    first: first + 1,
                    second: index,
                });
            }
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err(EquationError::Form {
                index: 1,
                text: cut(text.trim()),
            });
        }
        Ok(names)
    }

    /// Whether an equation uses `t` (the system is not autonomous).
    pub fn uses_t(&self) -> bool {
        let t_slot = self.states.len() + self.params.len();
        self.rhs.iter().flatten().any(|c| c.slots.contains(&t_slot))
    }

    /// Writes `∂f/∂y (t, y; p)` into `jac` (row-major `n × n`), from the symbolic partials.
    pub fn jacobian(&mut self, t: f64, y: &[f64], p: &[f64], jac: &mut [f64]) {
        self.load(t, y, p);
        let n = y.len();
        jac.iter_mut().for_each(|v| *v = 0.0);
        for (i, c) in self.rhs.iter().enumerate() {
            let Some(c) = c else { continue };
            for (slot, d) in &c.partials {
                if *slot < n {
                    jac[i * n + slot] += Compiled::eval(d, &c.slots, &self.all, &mut self.vars);
                }
            }
        }
    }

    /// The equations with their parameter values fixed: an ODE system with its
    /// Jacobian, for the stiff solvers.
    pub fn with_params(self, p: Vec<f64>) -> EquationSystem {
        EquationSystem {
            autonomous: !self.uses_t(),
            eq: self,
            p,
        }
    }

    fn load(&mut self, t: f64, y: &[f64], p: &[f64]) {
        let n = y.len();
        self.all[..n].copy_from_slice(y);
        self.all[n..n + p.len()].copy_from_slice(p);
        self.all[n + p.len()] = t;
    }
}

/// [`Equations`] with fixed parameter values, as an [`OdeSystem`] with an analytic
/// [`Jacobian`] (`cnflow solve`).
#[derive(Clone, Debug)]
pub struct EquationSystem {
    eq: Equations,
    p: Vec<f64>,
    autonomous: bool,
}

impl EquationSystem {
    /// The state names.
    pub fn states(&self) -> &[String] {
        &self.eq.states
    }
}

impl OdeSystem<f64> for EquationSystem {
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        Mechanistic::rhs(&mut self.eq, t, y, &self.p, dy)
    }
}

impl Jacobian<f64> for EquationSystem {
    fn is_autonomous(&self) -> bool {
        self.autonomous
    }
    fn jacobian(&mut self, t: f64, y: &[f64], jac: &mut [f64]) {
        self.eq.jacobian(t, y, &self.p, jac)
    }
}

impl Mechanistic for Equations {
    fn dim(&self) -> usize {
        self.states.len()
    }

    fn param_names(&self) -> Vec<String> {
        self.params.clone()
    }

    fn rhs(&mut self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        self.load(t, y, p);
        for (j, c) in self.rhs.iter().enumerate() {
            dy[j] = match c {
                Some(c) => Compiled::eval(&c.expr, &c.slots, &self.all, &mut self.vars),
                None => 0.0,
            };
        }
    }

    fn vjp(&mut self, t: f64, y: &[f64], p: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.load(t, y, p);
        let n = y.len();
        for (i, c) in self.rhs.iter().enumerate() {
            let Some(c) = c else { continue };
            if w[i] == 0.0 {
                continue;
            }
            for (slot, d) in &c.partials {
                let v = w[i] * Compiled::eval(d, &c.slots, &self.all, &mut self.vars);
                if *slot < n {
                    grad_y[*slot] += v;
                } else {
                    grad_p[*slot - n] += v;
                }
            }
        }
    }

    fn box_clone(&self) -> Box<dyn Mechanistic> {
        Box::new(self.clone())
    }

    fn equations(&self) -> Option<&str> {
        Some(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbers_with_exponents_and_names_that_shadow_constants_parse() {
        let states = names(&["e", "y2"]);
        let mut eq = Equations::parse("de = -4e-2*e + 1e4*y2*t\ndy2/dt = sin(e) # comment", &states, &[]).unwrap();
        let mut dy = [0.0; 2];
        eq.rhs(0.5, &[2.0, 3.0], &[], &mut dy);
        assert!((dy[0] - (-0.08 + 1e4 * 3.0 * 0.5)).abs() < 1e-9);
        assert!((dy[1] - 2f64.sin()).abs() < 1e-15);
    }

    #[test]
    fn bad_equations_name_what_is_wrong() {
        let states = names(&["x", "y"]);
        let params = names(&["a"]);
        let err = |s: &str| Equations::parse(s, &states, &params).unwrap_err();
        assert!(matches!(err("dz = x"), EquationError::UnknownState { .. }));
        assert!(matches!(err("x + y"), EquationError::Form { .. }));
        assert!(matches!(err("dx = x; dx = y"), EquationError::Duplicate { .. }));
        match err("dx = a*x - q*y") {
            EquationError::UnknownSymbol { symbol, state, .. } => {
                assert_eq!((symbol.as_str(), state.as_str()), ("q", "x"))
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(err("dx = a*x -"), EquationError::Parse { .. }));
        assert!(err("dx = b").to_string().contains("--params b="));
    }
}
