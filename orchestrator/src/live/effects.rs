//! The local live runner's "models": CPU effects on decoded I420 frames, switched live by
//! control messages. Each works in place on the three planes of one frame; none allocates
//! per frame except `edges` and `blur`, which keep one scratch buffer.

/// An effect and its setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Pass the frame through unchanged (ai-runner's `noop`).
    Noop,
    /// Invert luma and chroma (a photographic negative).
    Negate,
    /// Sobel edge magnitude of the luma, on grey.
    Edges,
    /// Rotate the chroma by this many degrees.
    Hue(f32),
    /// Box blur of the luma with this radius, pixels.
    Blur(u32),
}

/// The model ids the local orchestrator serves for `live-video-to-video`.
pub const MODELS: [&str; 6] = ["noop", "negate", "edges", "hue", "blur", ECHO];

/// The model that returns the input segments as they are, without decoding them: the
/// transport alone, for load tests.
pub const ECHO: &str = "echo";

impl Effect {
    /// The effect model `model_id` starts with, adjusted by `params` (see [`Effect::update`]).
    /// `None` for a model this runner does not have.
    pub fn for_model(model_id: &str, params: &serde_json::Value) -> Option<Effect> {
        let base = Self::named(model_id)?;
        Some(base.update(params))
    }

    fn named(name: &str) -> Option<Effect> {
        Some(match name {
            "noop" | ECHO => Effect::Noop,
            "negate" => Effect::Negate,
            "edges" => Effect::Edges,
            "hue" => Effect::Hue(90.0),
            "blur" => Effect::Blur(4),
            _ => return None,
        })
    }

    /// Applies a params object from the job or a control message: `effect` switches to
    /// another model's effect; `degrees` sets the hue rotation, `radius` the blur (1–32).
    /// Unknown keys and values are ignored (a runner keeps running on a bad update).
    pub fn update(self, params: &serde_json::Value) -> Effect {
        let mut e = params.get("effect").and_then(|v| v.as_str()).and_then(Self::named).unwrap_or(self);
        if let (Effect::Hue(d), Some(v)) = (&mut e, params.get("degrees").and_then(|v| v.as_f64())) {
            *d = v as f32;
        }
        if let (Effect::Blur(r), Some(v)) = (&mut e, params.get("radius").and_then(|v| v.as_u64())) {
            *r = v.clamp(1, 32) as u32;
        }
        e
    }

    /// The effect's name, as the model id.
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Noop => "noop",
            Effect::Negate => "negate",
            Effect::Edges => "edges",
            Effect::Hue(_) => "hue",
            Effect::Blur(_) => "blur",
        }
    }
}

/// One I420 frame's planes, each with its row stride in bytes.
pub struct Planes<'a> {
    /// Luma, `width × height`.
    pub y: (&'a mut [u8], usize),
    /// Cb, `(width+1)/2 × (height+1)/2`.
    pub u: (&'a mut [u8], usize),
    /// Cr, same size as Cb.
    pub v: (&'a mut [u8], usize),
    /// Luma width, pixels.
    pub width: usize,
    /// Luma height, pixels.
    pub height: usize,
}

/// Applies effects, keeping a scratch buffer between frames.
#[derive(Default)]
pub struct Effects {
    scratch: Vec<u8>,
}

impl Effects {
    /// Applies `effect` to `frame` in place.
    pub fn apply(&mut self, effect: Effect, f: &mut Planes<'_>) {
        let (cw, ch) = (f.width.div_ceil(2), f.height.div_ceil(2));
        match effect {
            Effect::Noop => {}
            Effect::Negate => {
                for_rows(f.y.0, f.y.1, f.width, f.height, |row| row.iter_mut().for_each(|p| *p = 255 - *p));
                for plane in [&mut f.u, &mut f.v] {
                    for_rows(plane.0, plane.1, cw, ch, |row| row.iter_mut().for_each(|p| *p = 255 - *p));
                }
            }
            Effect::Edges => {
                self.copy_luma(f);
                let (w, h, s) = (f.width, f.height, f.y.1);
                let src = &self.scratch;
                for yy in 0..h {
                    for xx in 0..w {
                        let at = |dx: isize, dy: isize| -> i32 {
                            let x = (xx as isize + dx).clamp(0, w as isize - 1) as usize;
                            let y = (yy as isize + dy).clamp(0, h as isize - 1) as usize;
                            src[y * w + x] as i32
                        };
                        let gx = at(1, -1) + 2 * at(1, 0) + at(1, 1) - at(-1, -1) - 2 * at(-1, 0) - at(-1, 1);
                        let gy = at(-1, 1) + 2 * at(0, 1) + at(1, 1) - at(-1, -1) - 2 * at(0, -1) - at(1, -1);
                        f.y.0[yy * s + xx] = ((gx.abs() + gy.abs()) / 2).min(255) as u8;
                    }
                }
                for plane in [&mut f.u, &mut f.v] {
                    for_rows(plane.0, plane.1, cw, ch, |row| row.fill(128));
                }
            }
            Effect::Hue(degrees) => {
                let (sin, cos) = degrees.to_radians().sin_cos();
                for r in 0..ch {
                    let (u_row, v_row) = (&mut f.u.0[r * f.u.1..][..cw], &mut f.v.0[r * f.v.1..][..cw]);
                    for (u, v) in u_row.iter_mut().zip(v_row.iter_mut()) {
                        let (cu, cv) = (*u as f32 - 128.0, *v as f32 - 128.0);
                        *u = (cu * cos - cv * sin + 128.0).clamp(0.0, 255.0) as u8;
                        *v = (cu * sin + cv * cos + 128.0).clamp(0.0, 255.0) as u8;
                    }
                }
            }
            Effect::Blur(radius) => {
                self.copy_luma(f);
                let (w, h, s, r) = (f.width, f.height, f.y.1, radius as usize);
                // Horizontal pass into the frame, then vertical back through the scratch.
                for yy in 0..h {
                    box_line(&self.scratch[yy * w..][..w], 1, &mut f.y.0[yy * s..][..w], 1, r);
                }
                for yy in 0..h {
                    self.scratch[yy * w..][..w].copy_from_slice(&f.y.0[yy * s..][..w]);
                }
                let mut col = vec![0u8; h];
                for xx in 0..w {
                    box_line(&self.scratch[xx..], w, &mut col, 1, r);
                    for (yy, c) in col.iter().enumerate() {
                        f.y.0[yy * s + xx] = *c;
                    }
                }
            }
        }
    }

    fn copy_luma(&mut self, f: &Planes<'_>) {
        self.scratch.resize(f.width * f.height, 0);
        for r in 0..f.height {
            self.scratch[r * f.width..][..f.width].copy_from_slice(&f.y.0[r * f.y.1..][..f.width]);
        }
    }
}

fn for_rows(plane: &mut [u8], stride: usize, width: usize, height: usize, mut f: impl FnMut(&mut [u8])) {
    for r in 0..height {
        f(&mut plane[r * stride..][..width]);
    }
}

/// A running box average of `src` (every `step`-th byte, as many as `dst` holds after its
/// own `dst_step`) with `radius`, edges clamped.
fn box_line(src: &[u8], step: usize, dst: &mut [u8], dst_step: usize, radius: usize) {
    let n = dst.len() / dst_step;
    let px = |i: isize| src[(i.clamp(0, n as isize - 1) as usize) * step] as u32;
    let window = (2 * radius + 1) as u32;
    let mut sum: u32 = (-(radius as isize)..=radius as isize).map(px).sum();
    for i in 0..n {
        dst[i * dst_step] = (sum / window) as u8;
        sum += px(i as isize + radius as isize + 1);
        sum -= px(i as isize - radius as isize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, stride: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let y = (0..stride * h).map(|i| ((i % stride) * 255 / w.max(1)).min(255) as u8).collect();
        let cs = stride.div_ceil(2);
        (y, vec![100; cs * h.div_ceil(2)], vec![160; cs * h.div_ceil(2)])
    }

    fn run(effect: Effect, w: usize, h: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let stride = w + 16;
        let (mut y, mut u, mut v) = frame(w, h, stride);
        let cs = stride.div_ceil(2);
        let mut planes = Planes { y: (&mut y, stride), u: (&mut u, cs), v: (&mut v, cs), width: w, height: h };
        Effects::default().apply(effect, &mut planes);
        (y, u, v)
    }

    fn mean_luma(y: &[u8], w: usize, h: usize) -> f64 {
        let stride = w + 16;
        (0..h).flat_map(|r| y[r * stride..][..w].iter()).map(|&p| p as f64).sum::<f64>() / (w * h) as f64
    }

    #[test]
    fn negate_inverts_every_plane_and_the_mean_luma() {
        let (w, h) = (64, 48);
        let (y0, _, _) = frame(w, h, w + 16);
        let (y, u, v) = run(Effect::Negate, w, h);
        let (m0, m1) = (mean_luma(&y0, w, h), mean_luma(&y, w, h));
        assert!((m0 + m1 - 255.0).abs() < 0.01, "{m0} + {m1}");
        assert_eq!((u[0], v[0]), (155, 95));
        // Stride padding is left alone.
        assert_eq!(y[w], y0[w]);
    }

    #[test]
    fn edges_blur_and_hue_do_what_they_say() {
        let (w, h) = (64, 48);
        // A horizontal ramp of about 4 per pixel: Sobel gx = (1+2+1) × 8 over two pixels,
        // gy = 0, so (|gx| + |gy|) / 2 ≈ 16.
        let (y, u, _) = run(Effect::Edges, w, h);
        let mid = y[20 * (w + 16) + 30];
        assert!((14..=18).contains(&mid), "sobel of the ramp: {mid}");
        assert_eq!(u[0], 128);
        let (y, _, _) = run(Effect::Blur(3), w, h);
        let (y0, _, _) = frame(w, h, w + 16);
        assert!((y[20 * (w + 16) + 30] as i32 - y0[20 * (w + 16) + 30] as i32).abs() <= 1, "a ramp blurs to itself");
        let (_, u, v) = run(Effect::Hue(180.0), w, h);
        assert_eq!((u[0], v[0]), (156, 96), "half a turn flips the chroma about grey (256 - x)");
        let (_, u, v) = run(Effect::Noop, w, h);
        assert_eq!((u[0], v[0]), (100, 160));
    }

    #[test]
    fn models_and_params() {
        use serde_json::json;
        assert_eq!(Effect::for_model("negate", &json!({})), Some(Effect::Negate));
        assert_eq!(Effect::for_model("streamdiffusion", &json!({})), None);
        assert_eq!(Effect::for_model("hue", &json!({"degrees": 45})), Some(Effect::Hue(45.0)));
        assert_eq!(Effect::Negate.update(&json!({"effect": "blur", "radius": 100})), Effect::Blur(32));
        assert_eq!(Effect::Negate.update(&json!({"effect": "nope", "prompt": "x"})), Effect::Negate);
        for m in MODELS.iter().filter(|m| **m != ECHO) {
            assert_eq!(Effect::for_model(m, &json!({})).unwrap().name(), *m);
        }
    }
}
