//! The linear sum assignment problem (minimum-cost one-to-one matching of
//! rows to columns of a rectangular cost matrix), solved with the shortest
//! augmenting path algorithm (Jonker–Volgenant style with Dijkstra over
//! reduced costs, as described by Crouse, "On implementing 2D rectangular
//! assignment algorithms", IEEE TAES 2016). This is the algorithm behind
//! `scipy.optimize.linear_sum_assignment`; it visits columns in the same
//! order and breaks ties the same way, so it returns scipy's matching.
//!
//! Pure Rust on `f64`, O(n² m) for an n x m matrix with n <= m.
//!
//! Shape shorthand: a `rows x cols` row-major cost matrix.

use std::fmt;

/// Why a cost matrix cannot be solved.
#[derive(Debug, Clone, PartialEq)]
pub enum LsaError {
    /// `cost.len() != rows * cols`.
    Shape {
        len: usize,
        rows: usize,
        cols: usize,
    },
    /// An entry is NaN or infinite.
    NonFinite { row: usize, col: usize, value: f64 },
}

impl fmt::Display for LsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LsaError::Shape { len, rows, cols } => write!(
                f,
                "cost matrix has {len} entries, expected {rows} x {cols} = {}",
                rows * cols
            ),
            LsaError::NonFinite { row, col, value } => write!(
                f,
                "cost matrix entry ({row}, {col}) is {value}; every cost must be finite \
                 (check the predictions for NaN/inf, e.g. a diverged training)"
            ),
        }
    }
}

impl std::error::Error for LsaError {}

/// Solves `min Σ cost[r][c]` over matchings of size `min(rows, cols)`.
/// `cost` is row-major `rows x cols`. Returns `(row_ind, col_ind)` with
/// `row_ind` increasing, as scipy does.
pub fn linear_sum_assignment(
    cost: &[f64],
    rows: usize,
    cols: usize,
) -> Result<(Vec<usize>, Vec<usize>), LsaError> {
    if cost.len() != rows * cols {
        return Err(LsaError::Shape {
            len: cost.len(),
            rows,
            cols,
        });
    }
    if let Some(i) = cost.iter().position(|v| !v.is_finite()) {
        return Err(LsaError::NonFinite {
            row: i / cols.max(1),
            col: i % cols.max(1),
            value: cost[i],
        });
    }
    if rows == 0 || cols == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // Work on a matrix with no more rows than columns.
    let transpose = rows > cols;
    let (nr, nc, c): (usize, usize, Vec<f64>) = if transpose {
        let mut t = vec![0.0; rows * cols];
        for r in 0..rows {
            for k in 0..cols {
                t[k * rows + r] = cost[r * cols + k];
            }
        }
        (cols, rows, t)
    } else {
        (rows, cols, cost.to_vec())
    };
    let col4row = solve(&c, nr, nc);
    if transpose {
        // Rows of the transposed problem are the original columns: sort by
        // the original row (the matched column of the transposed problem).
        let mut pairs: Vec<(usize, usize)> =
            col4row.iter().enumerate().map(|(k, &r)| (r, k)).collect();
        pairs.sort_unstable();
        Ok(pairs.into_iter().unzip())
    } else {
        Ok(((0..nr).collect(), col4row))
    }
}

/// nr <= nc, all entries finite: the column matched to each row.
fn solve(cost: &[f64], nr: usize, nc: usize) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let mut u = vec![0.0f64; nr];
    let mut v = vec![0.0f64; nc];
    let mut shortest = vec![f64::INFINITY; nc];
    let mut path = vec![NONE; nc];
    let mut col4row = vec![NONE; nr];
    let mut row4col = vec![NONE; nc];
    let mut sr = vec![false; nr];
    let mut sc = vec![false; nc];
    let mut remaining = vec![0usize; nc];

    for cur_row in 0..nr {
        // Dijkstra from `cur_row` over reduced costs until a free column.
        let mut min_val = 0.0f64;
        let mut num_remaining = nc;
        for (it, r) in remaining.iter_mut().enumerate() {
            // Reverse order, so ties prefer the last column as scipy does.
            *r = nc - it - 1;
        }
        sr.iter_mut().for_each(|x| *x = false);
        sc.iter_mut().for_each(|x| *x = false);
        shortest.iter_mut().for_each(|x| *x = f64::INFINITY);
        let mut i = cur_row;
        let sink = loop {
            let mut index = NONE;
            let mut lowest = f64::INFINITY;
            sr[i] = true;
            for (it, &j) in remaining[..num_remaining].iter().enumerate() {
                let r = min_val + cost[i * nc + j] - u[i] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == NONE) {
                    lowest = shortest[j];
                    index = it;
                }
            }
            // All costs are finite, so a column is always reachable.
            min_val = lowest;
            let j = remaining[index];
            sc[j] = true;
            num_remaining -= 1;
            remaining[index] = remaining[num_remaining];
            if row4col[j] == NONE {
                break j;
            }
            i = row4col[j];
        };
        // Update the dual variables.
        u[cur_row] += min_val;
        for r in 0..nr {
            if sr[r] && r != cur_row {
                u[r] += min_val - shortest[col4row[r]];
            }
        }
        for j in 0..nc {
            if sc[j] {
                v[j] -= min_val - shortest[j];
            }
        }
        // Augment along the path back to `cur_row`.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == cur_row {
                break;
            }
        }
    }
    col4row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(c: &[f64], cols: usize, r: &[usize], k: &[usize]) -> f64 {
        r.iter().zip(k).map(|(&a, &b)| c[a * cols + b]).sum()
    }

    /// Exhaustive minimum over all injective maps of the smaller side.
    fn brute(c: &[f64], rows: usize, cols: usize) -> f64 {
        fn rec(c: &[f64], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for k in 0..cols {
                if !used[k] {
                    used[k] = true;
                    best = best.min(c[r * cols + k] + rec(c, rows, cols, r + 1, used));
                    used[k] = false;
                }
            }
            best
        }
        if rows <= cols {
            rec(c, rows, cols, 0, &mut vec![false; cols])
        } else {
            let mut t = vec![0.0; rows * cols];
            for r in 0..rows {
                for k in 0..cols {
                    t[k * rows + r] = c[r * cols + k];
                }
            }
            rec(&t, cols, rows, 0, &mut vec![false; rows])
        }
    }

    #[test]
    fn optimal_on_small_random_matrices() {
        let mut s = 12345u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for &(r, c) in &[(1, 1), (3, 3), (4, 6), (6, 4), (5, 5), (2, 7), (7, 2)] {
            for _ in 0..5 {
                let m: Vec<f64> = (0..r * c).map(|_| rnd() * 10.0 - 3.0).collect();
                let (ri, ci) = linear_sum_assignment(&m, r, c).unwrap();
                assert_eq!(ri.len(), r.min(c));
                assert!(ri.windows(2).all(|w| w[0] < w[1]));
                let got = total(&m, c, &ri, &ci);
                assert!((got - brute(&m, r, c)).abs() < 1e-9, "{r}x{c}");
            }
        }
    }

    #[test]
    fn empty_and_invalid() {
        assert_eq!(linear_sum_assignment(&[], 0, 5).unwrap(), (vec![], vec![]));
        assert_eq!(linear_sum_assignment(&[], 5, 0).unwrap(), (vec![], vec![]));
        let e = linear_sum_assignment(&[1.0, f64::NAN], 1, 2).unwrap_err();
        assert!(e.to_string().contains("(0, 1)"), "{e}");
        assert!(linear_sum_assignment(&[1.0, f64::INFINITY], 2, 1).is_err());
        assert!(linear_sum_assignment(&[1.0], 2, 1).is_err());
    }
}
