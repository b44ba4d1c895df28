//! Tensor views of a storage: bounds checks and materialising a strided view
//! as contiguous bytes.

use super::tensor::numel;

/// Checks that the view (`offset`, `size`, `stride`, in elements of
/// `elsize` bytes) lies inside a storage of `len` bytes; returns its byte
/// range when it is contiguous.
pub(super) fn view_range(
    len: usize,
    elsize: usize,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Result<Option<(usize, usize)>, String> {
    if size.len() != stride.len() {
        return Err(format!(
            "size {size:?} and stride {stride:?} differ in length"
        ));
    }
    let count = numel(size).ok_or_else(|| format!("invalid size {size:?}"))?;
    let bytes = count.checked_mul(elsize).ok_or("size overflows")?;
    let offset =
        usize::try_from(offset).map_err(|_| format!("negative storage offset {offset}"))?;
    if count == 0 {
        return Ok(Some((0, 0)));
    }
    let mut last = offset;
    for (&n, &s) in size.iter().zip(stride) {
        let s = usize::try_from(s).map_err(|_| format!("negative stride {stride:?}"))?;
        last = (n as usize - 1)
            .checked_mul(s)
            .and_then(|d| last.checked_add(d))
            .ok_or("stride overflows")?;
    }
    if last
        .checked_add(1)
        .and_then(|e| e.checked_mul(elsize))
        .is_none_or(|end| end > len)
    {
        return Err(format!(
            "view (offset {offset}, size {size:?}, stride {stride:?}) runs past the storage"
        ));
    }
    let contiguous = contiguous_strides(size);
    if size
        .iter()
        .zip(stride)
        .zip(&contiguous)
        .all(|((&n, &s), &c)| n == 1 || s == c)
    {
        return Ok(Some((offset * elsize, offset * elsize + bytes)));
    }
    Ok(None)
}

/// The contiguous bytes of a strided view already checked by [`view_range`].
pub(super) fn strided_copy(
    storage: &[u8],
    elsize: usize,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Vec<u8> {
    let count = numel(size).unwrap_or(0);
    let mut out = Vec::with_capacity(count * elsize);
    let mut index = vec![0i64; size.len()];
    for _ in 0..count {
        let at = offset as usize
            + index
                .iter()
                .zip(stride)
                .map(|(&i, &s)| (i * s) as usize)
                .sum::<usize>();
        out.extend_from_slice(&storage[at * elsize..(at + 1) * elsize]);
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].saturating_mul(size[d + 1]);
    }
    strides
}
