//! A compiled form of the equations' expressions for repeated evaluation.
//!
//! exmex parses the equations and differentiates them symbolically; evaluating its
//! flat expressions copies their node lists every time, which dominated a fit of a
//! small mechanistic model (half of `fit-series`' time on Lotka–Volterra). Each
//! expression's text (exmex's own unparsed form for the derivatives) is compiled here
//! once into postfix code for a small stack machine that reads the variables straight
//! from the `[y, p, t]` slots. The compiled code is kept only if it agrees with exmex's
//! evaluation at a set of test points; an expression it cannot compile or that
//! disagrees is evaluated by exmex as before, so the two can never give different
//! models.

use exmex::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Num(f64),
    Slot(usize),
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Neg,
    Func(fn(f64) -> f64),
}

/// Postfix code of one expression.
#[derive(Clone, Debug)]
pub(crate) struct Tape {
    ops: Vec<Op>,
    depth: usize,
}

/// exmex's float functions that the tape knows, by name.
fn function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "cbrt" => f64::cbrt,
        "abs" => f64::abs,
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(f64),
    Name(String),
    Var(String),
    Sym(char),
}

/// The end of the number literal starting at `chars[i]`: digits and points, then an
/// exponent (`e`, an optional sign, digits) if one follows.
pub(crate) fn number_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
        i += 1;
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let mut j = i + 1;
        if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
            j += 1;
        }
        if j < chars.len() && chars[j].is_ascii_digit() {
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

fn lex(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            i = number_end(&chars, i);
            out.push(Token::Num(chars[start..i].iter().collect::<String>().parse().ok()?));
        } else if c == '{' {
            let end = chars[i..].iter().position(|&d| d == '}')? + i;
            out.push(Token::Var(chars[i + 1..end].iter().collect()));
            i = end + 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else if "+-*/^()".contains(c) {
            out.push(Token::Sym(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Recursive descent: `+ −` below `* /` below `^` below a unary sign.
struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    ops: Vec<Op>,
    slot_of: &'a dyn Fn(&str) -> Option<usize>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Sym(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn sum(&mut self) -> Option<()> {
        self.product()?;
        loop {
            if self.eat('+') {
                self.product()?;
                self.ops.push(Op::Add);
            } else if self.eat('-') {
                self.product()?;
                self.ops.push(Op::Sub);
            } else {
                return Some(());
            }
        }
    }
    fn product(&mut self) -> Option<()> {
        self.unary()?;
        loop {
            if self.eat('*') {
                self.unary()?;
                self.ops.push(Op::Mul);
            } else if self.eat('/') {
                self.unary()?;
                self.ops.push(Op::Div);
            } else {
                return Some(());
            }
        }
    }
    /// A unary sign binds tighter than every binary operator, as in exmex
    /// (`-x^2 = (-x)^2`); `^` is left-associative, as exmex evaluates operators of equal
    /// priority left to right.
    fn unary(&mut self) -> Option<()> {
        self.signed()?;
        while self.eat('^') {
            self.signed()?;
            self.ops.push(Op::Pow);
        }
        Some(())
    }
    fn signed(&mut self) -> Option<()> {
        if self.eat('-') {
            self.signed()?;
            self.ops.push(Op::Neg);
            Some(())
        } else {
            self.eat('+');
            self.atom()
        }
    }
    fn atom(&mut self) -> Option<()> {
        match self.peek()?.clone() {
            Token::Num(v) => {
                self.at += 1;
                self.ops.push(Op::Num(v));
            }
            Token::Var(name) => {
                self.at += 1;
                self.ops.push(Op::Slot((self.slot_of)(&name)?));
            }
            Token::Name(name) => {
                self.at += 1;
                if let Some(f) = function(&name) {
                    if !self.eat('(') {
                        return None;
                    }
                    self.sum()?;
                    if !self.eat(')') {
                        return None;
                    }
                    self.ops.push(Op::Func(f));
                } else {
                    self.ops.push(Op::Slot((self.slot_of)(&name)?));
                }
            }
            Token::Sym('(') => {
                self.at += 1;
                self.sum()?;
                if !self.eat(')') {
                    return None;
                }
            }
            Token::Sym(_) => return None,
        }
        Some(())
    }
}

impl Tape {
    /// Compiles `expr`, whose variables `expr.var_names()[k]` live at `slots[k]` of the
    /// values; `None` when the text has something the tape does not know or the tape
    /// disagrees with exmex at any of the test points.
    pub(crate) fn compile(expr: &FlatEx<f64>, slots: &[usize], n_values: usize) -> Option<Tape> {
        let names: Vec<String> = expr
            .var_names()
            .iter()
            .map(|v| v.trim_start_matches('{').trim_end_matches('}').to_string())
            .collect();
        let slot_of = |name: &str| names.iter().position(|v| v == name).map(|k| slots[k]);
        let tokens = lex(expr.unparse())?;
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            ops: Vec::new(),
            slot_of: &slot_of,
        };
        parser.sum()?;
        if parser.at != tokens.len() {
            return None;
        }
        let mut depth: usize = 0;
        let mut max_depth = 0;
        for op in &parser.ops {
            match op {
                Op::Num(_) | Op::Slot(_) => depth += 1,
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => depth = depth.checked_sub(1)?,
                Op::Neg | Op::Func(_) => {}
            }
            max_depth = max_depth.max(depth);
        }
        if depth != 1 {
            return None;
        }
        let tape = Tape {
            ops: parser.ops,
            depth: max_depth,
        };
        // The same values as exmex at test points spread over signs and magnitudes.
        let mut values = vec![0.0; n_values];
        let mut vars = Vec::new();
        let mut stack = Vec::new();
        for point in 0..6 {
            for (k, v) in values.iter_mut().enumerate() {
                let u = ((k * 7 + point * 13) % 17) as f64 / 17.0;
                *v = if point % 2 == 0 { 0.3 + 2.0 * u } else { -1.5 + 3.1 * u };
            }
            vars.clear();
            vars.extend(slots.iter().map(|&s| values[s]));
            let want = expr.eval(&vars).ok()?;
            let got = tape.eval(&values, &mut stack);
            let same = (want.is_nan() && got.is_nan())
                || want == got
                || (want - got).abs() <= 1e-12 * want.abs().max(got.abs()).max(1e-300);
            if !same {
                return None;
            }
        }
        Some(tape)
    }

    /// The value at `values` (the `[y, p, t]` slots); `stack` is scratch.
    #[inline]
    pub(crate) fn eval(&self, values: &[f64], stack: &mut Vec<f64>) -> f64 {
        stack.clear();
        stack.reserve(self.depth);
        for op in &self.ops {
            match *op {
                Op::Num(v) => stack.push(v),
                Op::Slot(s) => stack.push(values[s]),
                Op::Neg => {
                    let a = stack.last_mut().expect("checked at compile time");
                    *a = -*a;
                }
                Op::Func(f) => {
                    let a = stack.last_mut().expect("checked at compile time");
                    *a = f(*a);
                }
                bin => {
                    let b = stack.pop().expect("checked at compile time");
                    let a = stack.last_mut().expect("checked at compile time");
                    *a = match bin {
                        Op::Add => *a + b,
                        Op::Sub => *a - b,
                        Op::Mul => *a * b,
                        Op::Div => *a / b,
                        _ => a.powf(b),
                    };
                }
            }
        }
        stack[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exmex::Differentiate;

    /// Typical right-hand sides and their exmex derivatives compile (so the fast path is
    /// taken) and give exmex's values at points other than the compile-time checks';
    /// text the tape does not know stays with exmex.
    #[test]
    fn tapes_compile_and_agree_with_exmex() {
        let texts = [
            "{a}*{x} - {b}*{x}*{y}",
            "-{d}*{y} + {g}*{x}*{y}",
            "-0.04*{x} + 10000*{y}*{z}",
            "{mu}*(1 - {x}^2)*{y} - {x}",
            "-exp({lk})*({x} - {y})",
            "sin({t})^2 / (1 + {x}^2) - -{y}",
            "2^-{x} + {x}^3^0.5 - sqrt({y})*tanh({x})",
            "-{x}^2",
        ];
        for text in texts {
            let ex = exmex::parse::<f64>(text).unwrap();
            let slots: Vec<usize> = (0..ex.var_names().len()).rev().collect();
            let n = slots.len();
            let mut all = vec![ex.clone()];
            for k in 0..n {
                all.push(ex.clone().partial(k).unwrap());
            }
            for e in all {
                let tape = Tape::compile(&e, &slots, n).unwrap_or_else(|| panic!("{} did not compile", e.unparse()));
                let values: Vec<f64> = (0..n).map(|k| 0.77 + 0.41 * k as f64).collect();
                let vars: Vec<f64> = slots.iter().map(|&s| values[s]).collect();
                let (want, got) = (e.eval(&vars).unwrap(), tape.eval(&values, &mut Vec::new()));
                assert!(
                    (want - got).abs() <= 1e-12 * want.abs().max(1.0),
                    "{}: {got} vs {want}",
                    e.unparse()
                );
            }
        }
        let odd = exmex::parse::<f64>("signum({x}) + {x}").unwrap();
        assert!(Tape::compile(&odd, &[0], 1).is_none());
    }
}
