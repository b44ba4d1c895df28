//! Out of GPU memory, said so that the user knows what to change: which
//! rank and GPU, how much memory was in use of how much, the per-GPU batch
//! size, and the config key to lower, instead of PyTorch's allocator report.
//! The figures come from that report (`torch.OutOfMemoryError`'s text,
//! which names the GPU, its capacity and what the process holds).

use serde_json::Value;

/// The message for a run that failed with `error`, when it is a CUDA
/// out-of-memory error; `None` otherwise.
pub fn explain(error: &str, config: &Value, rank: Option<u32>) -> Option<String> {
    if !error.contains("CUDA out of memory") {
        return None;
    }
    let gpu = number_after(error, "GPU ").map_or("?".to_string(), |g| g.to_string());
    let capacity = text_after(error, "total capacity of ", " of which");
    let in_use = text_after(error, "this process has ", " memory in use");
    let tried = text_after(error, "Tried to allocate ", ". ");
    let batch = config
        .pointer("/train_dataloader/batch_size")
        .and_then(Value::as_u64)
        .map_or("?".to_string(), |b| b.to_string());
    let who = rank.map_or(String::new(), |r| format!("rank {r}: "));
    let memory = match (in_use, capacity) {
        (Some(used), Some(total)) => format!(" ({used} in use of {total})"),
        (None, Some(total)) => format!(" (of {total})"),
        _ => String::new(),
    };
    let tried = tried.map_or(String::new(), |t| format!(", {t} more asked for"));
    Some(format!(
        "{who}out of memory on GPU {gpu}{memory}{tried}, with train_dataloader.batch_size {batch} per GPU: \
         lower `train_dataloader.batch_size` (with --auto-scale-lr the learning rate follows), \
         or the images' scale in the pipeline's Resize, or train with --amp"
    ))
}

/// The number that follows the first `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The text between `start` and the next `end` in `text`.
fn text_after(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `torch.OutOfMemoryError`'s text (PyTorch 2.x).
    const TORCH: &str = "the train step failed: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 1 has a \
        total capacity of 139.81 GiB of which 3.12 GiB is free. Including non-PyTorch memory, this process has \
        136.68 GiB memory in use. Of the allocated memory 135.90 GiB is allocated by PyTorch, and 200.00 MiB is \
        reserved by PyTorch but unallocated.";

    #[test]
    fn names_rank_gpu_memory_batch_and_the_key_to_lower() {
        let config = json!({"train_dataloader": {"batch_size": 64}});
        let message = explain(TORCH, &config, Some(3)).unwrap();
        assert_eq!(
            message,
            "rank 3: out of memory on GPU 1 (136.68 GiB in use of 139.81 GiB), 20.00 GiB more asked for, with \
             train_dataloader.batch_size 64 per GPU: lower `train_dataloader.batch_size` (with --auto-scale-lr \
             the learning rate follows), or the images' scale in the pipeline's Resize, or train with --amp"
        );
        assert!(explain("the loss is NaN", &config, None).is_none());
        let bare = explain("CUDA out of memory", &json!({}), None).unwrap();
        assert!(
            bare.starts_with("out of memory on GPU ?, with train_dataloader.batch_size ? per GPU"),
            "{bare}"
        );
    }
}
