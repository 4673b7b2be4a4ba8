//! `spikes.svg`: training loss (top) and global gradient norm (bottom, log scale) per step of
//! every run, the projector refreshes of the first projecting run as grey lines and the spikes
//! as circles (the layout of the paper's Figures 2 and 4).

use std::path::Path;

use plotters::prelude::*;

use super::spikes::{RunCurve, Spike, steps_since_refresh};
use crate::learn::plot::write_svg;

pub fn plot_spikes(curves: &[RunCurve], spikes: &[&[Spike]], path: &Path) -> Result<(), String> {
    let finite = |v: f64| v.is_finite().then_some(v);
    let max_step = curves.iter().flat_map(|c| c.steps.iter().map(|s| s.0)).max().unwrap_or(1).max(2) as f64;
    let losses = || curves.iter().flat_map(|c| c.steps.iter().filter_map(|s| finite(s.1)));
    let (lo, hi) = (losses().fold(f64::INFINITY, f64::min), losses().fold(f64::NEG_INFINITY, f64::max));
    if !lo.is_finite() {
        return Err("no finite training loss to plot".to_owned());
    }
    let norms = || curves.iter().flat_map(|c| c.steps.iter().filter_map(|s| s.2.and_then(finite).filter(|n| *n > 0.0)));
    let norm_range = (norms().fold(f64::INFINITY, f64::min), norms().fold(0.0, f64::max));
    let refreshes: Vec<f64> = curves
        .iter()
        .find_map(|c| c.update_proj_gap)
        .map(|gap| (2..=max_step as usize).filter(|&s| steps_since_refresh(s, gap) == 0).map(|s| s as f64).collect())
        .unwrap_or_default();
    let margin = 0.05 * (hi - lo).max(1e-6);

    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (1000, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(380);
        let mut chart = ChartBuilder::on(&top)
            .caption("training loss (refreshes grey, spikes circled)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(1.0..max_step, (lo - margin)..(hi + margin))?;
        chart.configure_mesh().x_desc("step").y_desc("loss").draw()?;
        for &step in &refreshes {
            chart.draw_series(LineSeries::new([(step, lo - margin), (step, hi + margin)], RGBColor(190, 190, 190)))?;
        }
        for (i, (curve, spikes)) in curves.iter().zip(spikes).enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = curve.steps.iter().filter_map(|s| finite(s.1).map(|l| (s.0 as f64, l)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(&curve.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            let circled = spikes.iter().filter_map(|s| finite(s.loss).map(|l| Circle::new((s.step as f64, l), 5, color.stroke_width(2))));
            chart.draw_series(circled)?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;

        if norm_range.1 > 0.0 {
            let mut chart = ChartBuilder::on(&bottom)
                .caption("global gradient norm", ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(1.0..max_step, (norm_range.0 * 0.9..norm_range.1 * 1.1).log_scale())?;
            chart.configure_mesh().x_desc("step").y_desc("gradient norm").draw()?;
            for (i, curve) in curves.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let points = curve.steps.iter().filter_map(|s| s.2.and_then(finite).filter(|n| *n > 0.0).map(|n| (s.0 as f64, n)));
                chart.draw_series(LineSeries::new(points, color.stroke_width(1)))?;
            }
        }
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}
