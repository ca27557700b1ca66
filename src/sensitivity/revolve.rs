//! Binomial checkpointing (Griewank 1992; Griewank & Walther 2000): with `c` stored
//! states and `r` recomputations of any one step, at most `η(c, r) = C(c + r, c)` steps
//! can be reversed, and `η(c, r) = η(c, r − 1) + η(c − 1, r)` says how: advance to a
//! split point, store the state there, reverse the right part with `c − 1` states,
//! then the left part with `c` (the right part's checkpoint freed).

/// `C(c + r, c)`, saturating.
fn eta(c: usize, r: usize) -> usize {
    let mut v: u128 = 1;
    for i in 1..=c as u128 {
        v = v * (r as u128 + i) / i;
        if v > usize::MAX as u128 {
            return usize::MAX;
        }
    }
    v as usize
}

/// Where to split `len ≥ 2` steps reversed with `c ≥ 1` free checkpoints: the number of
/// steps of the left part (advanced through, then reversed with `c` checkpoints); the
/// right part (`len −` that) is reversed with `c − 1`. The split follows the binomial
/// recursion at the smallest repetition number `r` with `η(c, r) ≥ len`, so no step is
/// recomputed more than `r` times.
pub fn split_point(len: usize, c: usize) -> usize {
    debug_assert!(len >= 2 && c >= 1);
    let mut r = 1;
    while eta(c, r) < len {
        r += 1;
    }
    let right = eta(c - 1, r).min(len - 1);
    len - right
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps recomputed (advances) and checkpoints held at once when reversing `len`
    /// steps with `c` free checkpoints by [`split_point`].
    fn cost(len: usize, c: usize, held: usize, peak: &mut usize) -> usize {
        *peak = (*peak).max(held);
        if len <= 1 {
            return 0;
        }
        if c == 0 {
            // Advance from the start to each step in turn.
            return (0..len).sum();
        }
        let left = split_point(len, c);
        left + cost(len - left, c - 1, held + 1, peak) + cost(left, c, held, peak)
    }

    #[test]
    fn eta_is_the_binomial_coefficient() {
        assert_eq!(eta(3, 2), 10);
        assert_eq!(eta(1, 5), 6);
        assert_eq!(eta(0, 7), 1);
        assert_eq!(eta(4, 4), 70);
    }

    #[test]
    fn reversal_stays_within_the_budget_and_the_binomial_recomputation_bound() {
        for c in 1..6 {
            for len in 2..200 {
                let mut peak = 0;
                let advances = cost(len, c, 0, &mut peak);
                assert!(peak <= c, "len {len}, c {c}: held {peak}");
                // Each step is recomputed at most r times, r the least with η(c, r) ≥ len.
                let mut r = 1;
                while eta(c, r) < len {
                    r += 1;
                }
                assert!(advances <= r * len, "len {len}, c {c}: {advances} advances > {r}·{len}");
            }
        }
    }
}
