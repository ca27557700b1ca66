//! Explicit Runge–Kutta methods as Butcher tableaux.
//!
//! A method with `s` stages advances `y' = f(t, y)` from `(t, y)` by a step `h`:
//!
//! ```text
//! k_i   = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)      i = 1..s
//! y_new = y + h Σ_i b_i k_i
//! err   = h Σ_i e_i k_i         (e = b - b̂, embedded pairs only)
//! ```
//!
//! Dense output inside a step is `y(t + θh) = y + h Σ_i b_i(θ) k_i` for methods that
//! carry their own continuous extension, and cubic Hermite interpolation on
//! `(y, f(t, y), y_new, f(t + h, y_new))` otherwise. Adding a method means adding a
//! [`Tableau`] value here, not a new stepper.

use std::fmt;
use std::str::FromStr;

/// How a method produces output between its step points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interpolant {
    /// Cubic Hermite interpolation on the step's end values and slopes (order 3).
    Hermite,
    /// The method's own continuous extension: `b_i(θ) = Σ_m coef[i][m] θ^(m+1)`.
    Polynomial(&'static [&'static [f64]]),
}

/// A Butcher tableau: the whole description of an explicit Runge–Kutta method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tableau {
    /// Short name, as used on the command line.
    pub name: &'static str,
    /// Where the method comes from.
    pub reference: &'static str,
    /// Nodes `c_i` (length `s`).
    pub c: &'static [f64],
    /// Strictly lower-triangular coefficients: row `i` holds `a_i1 .. a_i(i-1)`.
    pub a: &'static [&'static [f64]],
    /// Weights of the propagated solution.
    pub b: &'static [f64],
    /// Error weights `e = b - b̂` of the embedded pair, if any.
    pub b_err: Option<&'static [f64]>,
    /// Order of the propagated solution.
    pub order: u32,
    /// Order of the embedded solution, if any.
    pub embedded_order: Option<u32>,
    /// First same as last: the last stage is `f(t + h, y_new)`, reused as the next `k_1`.
    pub fsal: bool,
    /// Dense output of the method.
    pub interpolant: Interpolant,
    /// Order of the dense output (local error `O(h^(order+1))` inside the step).
    pub interpolant_order: u32,
}

impl Tableau {
    /// Number of stages `s`.
    pub fn n_stages(&self) -> usize {
        self.b.len()
    }

    /// Whether the method has an error estimate and so can adapt its step size.
    pub fn is_adaptive(&self) -> bool {
        self.b_err.is_some()
    }

    /// Checks the tableau's identities: shapes, rows of `a` sum to `c`, `Σ b = 1`,
    /// `Σ e = 0`, FSAL rows, and the interpolant reproducing `b` at `θ = 1`.
    /// Returns the first violation found, with its size.
    pub fn check(&self, tol: f64) -> Result<(), String> {
        let s = self.n_stages();
        if self.c.len() != s || self.a.len() != s {
            return Err(format!(
                "{}: c has {} and a {} rows, expected {s}",
                self.name,
                self.c.len(),
                self.a.len()
            ));
        }
        for (i, row) in self.a.iter().enumerate() {
            if row.len() != i {
                return Err(format!(
                    "{}: row {i} of a has {} entries, expected {i}",
                    self.name,
                    row.len()
                ));
            }
            let sum: f64 = row.iter().sum();
            if (sum - self.c[i]).abs() > tol {
                return Err(format!("{}: row {i} of a sums to {sum}, c = {}", self.name, self.c[i]));
            }
        }
        let sb: f64 = self.b.iter().sum();
        if (sb - 1.0).abs() > tol {
            return Err(format!("{}: Σb = {sb}", self.name));
        }
        if let Some(e) = self.b_err {
            if e.len() != s {
                return Err(format!("{}: {} error weights for {s} stages", self.name, e.len()));
            }
            let se: f64 = e.iter().sum();
            if se.abs() > tol {
                return Err(format!("{}: Σe = {se}", self.name));
            }
        }
        if self.fsal {
            let last = self.a[s - 1];
            if self.c[s - 1] != 1.0 || self.b[s - 1] != 0.0 {
                return Err(format!("{}: FSAL needs c_s = 1 and b_s = 0", self.name));
            }
            for (j, (&x, &y)) in last.iter().zip(self.b).enumerate() {
                if (x - y).abs() > tol {
                    return Err(format!("{}: FSAL row a_s{j} = {x} differs from b_{j} = {y}", self.name));
                }
            }
        }
        if let Interpolant::Polynomial(coef) = self.interpolant {
            if coef.len() != s {
                return Err(format!(
                    "{}: interpolant has {} rows for {s} stages",
                    self.name,
                    coef.len()
                ));
            }
            for (i, row) in coef.iter().enumerate() {
                let at_one: f64 = row.iter().sum();
                if (at_one - self.b[i]).abs() > tol {
                    return Err(format!("{}: b_{i}(1) = {at_one}, b_{i} = {}", self.name, self.b[i]));
                }
            }
        }
        Ok(())
    }
}

/// Forward Euler, order 1 (Euler 1768).
pub const EULER: Tableau = Tableau {
    name: "euler",
    reference: "L. Euler, Institutiones calculi integralis (1768)",
    c: &[0.0],
    a: &[&[]],
    b: &[1.0],
    b_err: None,
    order: 1,
    embedded_order: None,
    fsal: false,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// Explicit midpoint rule, order 2 (Runge 1895).
pub const MIDPOINT: Tableau = Tableau {
    name: "midpoint",
    reference: "C. Runge, Über die numerische Auflösung von Differentialgleichungen, Math. Ann. 46 (1895)",
    c: &[0.0, 0.5],
    a: &[&[], &[0.5]],
    b: &[0.0, 1.0],
    b_err: None,
    order: 2,
    embedded_order: None,
    fsal: false,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// Heun's method (explicit trapezoid), order 2 (Heun 1900).
pub const HEUN: Tableau = Tableau {
    name: "heun",
    reference: "K. Heun, Neue Methoden zur approximativen Integration, Z. Math. Phys. 45 (1900)",
    c: &[0.0, 1.0],
    a: &[&[], &[1.0]],
    b: &[0.5, 0.5],
    b_err: None,
    order: 2,
    embedded_order: None,
    fsal: false,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// The classical Runge–Kutta method, order 4 (Kutta 1901).
pub const RK4: Tableau = Tableau {
    name: "rk4",
    reference:
        "W. Kutta, Beitrag zur näherungsweisen Integration totaler Differentialgleichungen, Z. Math. Phys. 46 (1901)",
    c: &[0.0, 0.5, 0.5, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    b_err: None,
    order: 4,
    embedded_order: None,
    fsal: false,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// Bogacki–Shampine 3(2), FSAL (Bogacki & Shampine 1989).
pub const BOSH3: Tableau = Tableau {
    name: "bosh3",
    reference: "P. Bogacki, L. F. Shampine, A 3(2) pair of Runge–Kutta formulas, Appl. Math. Lett. 2 (1989)",
    c: &[0.0, 0.5, 0.75, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.75], &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0]],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0],
    // b - b̂ with b̂ = (7/24, 1/4, 1/3, 1/8).
    b_err: Some(&[2.0 / 9.0 - 7.0 / 24.0, 1.0 / 3.0 - 0.25, 4.0 / 9.0 - 1.0 / 3.0, -0.125]),
    order: 3,
    embedded_order: Some(2),
    fsal: true,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// Dormand–Prince 5(4), FSAL, with Shampine's (1986) order-4 dense output.
pub const DOPRI5: Tableau = Tableau {
    name: "dopri5",
    reference:
        "J. R. Dormand, P. J. Prince, A family of embedded Runge–Kutta formulae, J. Comp. Appl. Math. 6 (1980); \
                dense output: L. F. Shampine, Some practical Runge–Kutta formulas, Math. Comp. 46 (1986), \
                in the form of Hairer, Nørsett & Wanner, Solving ODEs I, §II.6",
    c: &[0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0],
    a: &[
        &[],
        &[0.2],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ],
    b: &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ],
    b_err: Some(&[
        71.0 / 57600.0,
        0.0,
        -71.0 / 16695.0,
        71.0 / 1920.0,
        -17253.0 / 339200.0,
        22.0 / 525.0,
        -1.0 / 40.0,
    ]),
    order: 5,
    embedded_order: Some(4),
    fsal: true,
    // Shampine's continuous extension expanded into b_i(θ) = Σ_m coef[i][m] θ^(m+1).
    interpolant: Interpolant::Polynomial(&[
        &[1.0, -2.8535800653862835, 3.0717434641059005, -1.1270175653862835],
        &[0.0, 0.0, 0.0, 0.0],
        &[0.0, 4.023133379230305, -6.249321565289, 2.675424484351598],
        &[0.0, -3.7324019615885042, 10.068970589843675, -5.685526961588504],
        &[0.0, 2.5548038301849423, -6.399112377351017, 3.5219323679207912],
        &[0.0, -1.3744241142186024, 3.272657752246729, -1.7672812570757455],
        &[0.0, 1.3824689317781436, -3.764937863556287, 2.382468931778144],
    ]),
    interpolant_order: 4,
};

/// Tsitouras 5(4), FSAL, with its order-4 continuous extension (Tsitouras 2011).
pub const TSIT5: Tableau = Tableau {
    name: "tsit5",
    reference: "Ch. Tsitouras, Runge–Kutta pairs of order 5(4) satisfying only the first column \
                simplifying assumption, Comput. Math. Appl. 62 (2011)",
    c: &[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    a: &[
        &[],
        &[0.161],
        &[-0.008480655492356989, 0.335480655492357],
        &[2.8971530571054935, -6.359448489975075, 4.3622954328695815],
        &[
            5.325864828439257,
            -11.748883564062828,
            7.4955393428898365,
            -0.09249506636175525,
        ],
        &[
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ],
        &[
            0.09646076681806523,
            0.01,
            0.4798896504144996,
            1.379008574103742,
            -3.290069515436081,
            2.324710524099774,
        ],
    ],
    b: &[
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ],
    b_err: Some(&[
        -0.001780011052225777,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1.0 / 66.0,
    ]),
    order: 5,
    embedded_order: Some(4),
    fsal: true,
    // The paper's b_i(θ), expanded into powers of θ.
    interpolant: Interpolant::Polynomial(&[
        &[1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        &[0.0, 0.1317, -0.2234, 0.1017],
        &[0.0, 3.930296236894751, -5.941033872131505, 2.490627285651253],
        &[0.0, -12.411077166933676, 30.338188630282318, -16.548102889244902],
        &[0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        &[0.0, -27.896526289197286, 65.09189467479368, -34.87065786149661],
        &[0.0, 1.5, -4.0, 2.5],
    ]),
    interpolant_order: 4,
};

/// The methods cnflow ships, as a user picks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Forward Euler (fixed steps).
    Euler,
    /// Explicit midpoint (fixed steps).
    Midpoint,
    /// Heun (fixed steps).
    Heun,
    /// Classical RK4 (fixed steps).
    Rk4,
    /// Bogacki–Shampine 3(2) (adaptive or fixed).
    Bosh3,
    /// Dormand–Prince 5(4) (adaptive or fixed).
    Dopri5,
    /// Tsitouras 5(4) (adaptive or fixed).
    Tsit5,
}

impl Method {
    /// Every method, fixed-step ones first.
    pub const ALL: [Method; 7] = [
        Method::Euler,
        Method::Midpoint,
        Method::Heun,
        Method::Rk4,
        Method::Bosh3,
        Method::Dopri5,
        Method::Tsit5,
    ];

    /// The method's tableau.
    pub fn tableau(self) -> &'static Tableau {
        match self {
            Method::Euler => &EULER,
            Method::Midpoint => &MIDPOINT,
            Method::Heun => &HEUN,
            Method::Rk4 => &RK4,
            Method::Bosh3 => &BOSH3,
            Method::Dopri5 => &DOPRI5,
            Method::Tsit5 => &TSIT5,
        }
    }

    /// The method's name, as on the command line.
    pub fn name(self) -> &'static str {
        self.tableau().name
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Method::ALL.into_iter().find(|m| m.name() == lower).ok_or_else(|| {
            let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
            format!("unknown ODE method '{s}'; choose one of {}", names.join(", "))
        })
    }
}
