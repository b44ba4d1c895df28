//! Predictions as bytes, so that each training process's validation results
//! can be gathered to rank 0 (MMEngine's `collect_results`) through a c10d
//! all-gather of byte tensors. Little-endian; the format lives only for one
//! gather, between processes of one build.

use super::mask::Rle;
use super::metric::ImagePrediction;

/// Appends `preds` to `out`: a count, then each prediction.
pub fn encode(preds: &[ImagePrediction], out: &mut Vec<u8>) {
    put_u32(out, preds.len() as u32);
    for p in preds {
        out.extend_from_slice(&p.img_id.to_le_bytes());
        put_u32(out, p.scores.len() as u32);
        for b in &p.bboxes {
            b.iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        p.scores
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        p.labels.iter().for_each(|&l| put_u32(out, l as u32));
        match &p.masks {
            None => out.push(0),
            Some(masks) => {
                out.push(1);
                for m in masks {
                    put_u32(out, m.height);
                    put_u32(out, m.width);
                    put_u32(out, m.counts.len() as u32);
                    m.counts.iter().for_each(|&c| put_u32(out, c));
                }
            }
        }
        match &p.mask_scores {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                s.iter()
                    .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
        }
    }
}

/// The predictions [`encode`] wrote at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Vec<ImagePrediction>, String> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.u32()? as usize;
    let mut preds = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let img_id = i64::from_le_bytes(r.take::<8>()?);
        let k = r.u32()? as usize;
        let bboxes = (0..k)
            .map(|_| Ok([r.f32()?, r.f32()?, r.f32()?, r.f32()?]))
            .collect::<Result<Vec<_>, String>>()?;
        let scores = (0..k).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        let labels = (0..k)
            .map(|_| r.u32().map(|l| l as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let masks = match r.u8()? {
            0 => None,
            _ => Some(
                (0..k)
                    .map(|_| {
                        let (height, width, len) = (r.u32()?, r.u32()?, r.u32()? as usize);
                        let counts = (0..len).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
                        Ok(Rle {
                            height,
                            width,
                            counts,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            ),
        };
        let mask_scores = match r.u8()? {
            0 => None,
            _ => Some((0..k).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?),
        };
        preds.push(ImagePrediction {
            img_id,
            bboxes,
            scores,
            labels,
            masks,
            mask_scores,
        });
    }
    Ok(preds)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at + N;
        let chunk = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| format!("gathered predictions end early, at byte {}", self.at))?;
        self.at = end;
        Ok(chunk.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_survive_the_round_trip() {
        let preds = vec![
            ImagePrediction {
                img_id: 7,
                bboxes: vec![[1.0, 2.5, 3.0, 4.0], [0.0, 0.0, 9.0, 9.0]],
                scores: vec![0.9, 0.25],
                labels: vec![3, 0],
                masks: Some(vec![
                    Rle {
                        height: 2,
                        width: 3,
                        counts: vec![1, 4, 1],
                    },
                    Rle {
                        height: 2,
                        width: 3,
                        counts: vec![6],
                    },
                ]),
                mask_scores: Some(vec![0.5, 0.75]),
            },
            ImagePrediction {
                img_id: -1,
                ..ImagePrediction::default()
            },
        ];
        let mut bytes = vec![];
        encode(&preds, &mut bytes);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in preds.iter().zip(&back) {
            assert_eq!(
                (a.img_id, &a.bboxes, &a.scores, &a.labels),
                (b.img_id, &b.bboxes, &b.scores, &b.labels)
            );
            assert_eq!((&a.masks, &a.mask_scores), (&b.masks, &b.mask_scores));
        }
        assert!(
            decode(&bytes[..bytes.len() - 1]).is_err(),
            "a truncated buffer is an error"
        );
    }
}
