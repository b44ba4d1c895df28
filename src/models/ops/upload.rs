//! Copies between the host and the device without waiting for the device.
//! A blocking copy to a GPU (`Tensor::to_device`, torch's `.to('cuda')`)
//! waits for every kernel queued before it (libtorch's `memcpy_and_sync`),
//! so each small constant uploaded inside a step stalls the step until the
//! device catches up. A copy from pageable memory has read the values when
//! it returns, non-blocking or not, so the host buffer may go at once. The
//! other way, several results can be queued for the host and read after
//! one wait (`to_host_later`).

use tch::{kind::Element, Device, Kind, Tensor};

use crate::models::layers::ModelResult;

/// `values` as a tensor of their own kind on `device`.
pub fn upload<T: Element>(values: &[T], device: Device) -> ModelResult<Tensor> {
    upload_as(values, T::KIND, device)
}

/// `values` as a tensor of `kind` on `device` (converted on the host).
pub fn upload_as<T: Element>(values: &[T], kind: Kind, device: Device) -> ModelResult<Tensor> {
    let host = Tensor::f_from_slice(values)?.f_to_kind(kind)?;
    Ok(host.f_to_device_(device, kind, true, false)?)
}

/// Each row of four `(values, count)` repeated `count` times, as a
/// (Σcount, 4) tensor of `kind` on `device`: a constant per row of several
/// images' rows (each image's size, say) in one upload.
pub fn upload_repeated(rows: &[([f64; 4], i64)], kind: Kind, device: Device) -> ModelResult<Tensor> {
    let host: Vec<f64> = rows
        .iter()
        .flat_map(|&(values, count)| std::iter::repeat_n(values, count.max(0) as usize).flatten())
        .collect();
    Ok(upload_as(&host, kind, device)?.f_view([-1, 4])?)
}

/// `t` copied to host memory without waiting for the device (pinned, so
/// the copy runs on the stream, in order): read it only once the device
/// has been waited for since, by [`wait_for`] or a blocking read queued
/// after it (a `nonzero`, say). On the CPU, a plain copy.
pub fn to_host_later(t: &Tensor) -> ModelResult<Tensor> {
    let t = t.f_contiguous()?;
    Ok(t.f_to_device_(Device::Cpu, t.kind(), t.device().is_cuda(), false)?)
}

/// Waits for the work queued on `device`, the copies to the host among it.
pub fn wait_for(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_keep_or_convert_the_kind() {
        let t = upload(&[1i64, 2, 3], Device::Cpu).unwrap();
        assert_eq!((t.kind(), Vec::<i64>::try_from(&t).unwrap()), (Kind::Int64, vec![1, 2, 3]));
        let t = upload_as(&[0.5f64, 2.0], Kind::Float, Device::Cpu).unwrap();
        assert_eq!((t.kind(), Vec::<f32>::try_from(&t).unwrap()), (Kind::Float, vec![0.5, 2.0]));
        if tch::Cuda::is_available() {
            let t = upload_as(&[0.5f64, 2.0], Kind::Half, Device::Cuda(0)).unwrap();
            assert_eq!((t.kind(), t.device()), (Kind::Half, Device::Cuda(0)));
            assert_eq!(Vec::<f32>::try_from(&t.to_kind(Kind::Float)).unwrap(), vec![0.5, 2.0]);
        }
    }
}
