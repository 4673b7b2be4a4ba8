//! `scaling.svg`: the matrix-level ψ of every matrix, sorted by its full-rank value, in the
//! full-rank and the low-rank run (log scale; the layout of the paper's Figure 3).

use std::path::Path;

use plotters::prelude::*;

use super::scaling::MatrixScaling;
use crate::learn::plot::write_svg;

pub fn plot_scaling(matrices: &[MatrixScaling], low_rank_label: &str, path: &Path) -> Result<(), String> {
    let mut order: Vec<&MatrixScaling> = matrices.iter().filter(|m| m.full_rank > 0.0 && m.low_rank > 0.0).collect();
    if order.is_empty() {
        return Err("no positive scaling factor to plot".to_owned());
    }
    order.sort_by(|a, b| a.full_rank.total_cmp(&b.full_rank));
    let values = || order.iter().flat_map(|m| [m.full_rank, m.low_rank]);
    let (lo, hi) = (values().fold(f64::INFINITY, f64::min), values().fold(0.0, f64::max));
    let last = order.len() as f64;
    let series =
        |pick: fn(&MatrixScaling) -> f64| -> Vec<(f64, f64)> { order.iter().enumerate().map(|(i, m)| (i as f64 + 1.0, pick(m))).collect() };

    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (900, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("matrix-level scaling factor ψ, matrices sorted by their full-rank ψ", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(65)
            .build_cartesian_2d(0.5..last + 0.5, (lo * 0.8..hi * 1.25).log_scale())?;
        chart.configure_mesh().x_desc("matrix (by full-rank ψ)").y_desc("ψ").y_label_formatter(&|v| format!("{v:.0e}")).draw()?;
        for (label, points, color) in [("full-rank (adamw)", series(|m| m.full_rank), BLUE), (low_rank_label, series(|m| m.low_rank), RED)]
        {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}
