//! `curves.svg`: training and validation loss, and validation perplexity, against tokens seen.

use std::path::Path;

use plotters::prelude::*;

use super::step_log::StepRecord;

/// Draws the curves of `records` into an SVG file.
pub fn plot_curves(records: &[StepRecord], title: &str, path: &Path) -> Result<(), String> {
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for record in records {
        match *record {
            StepRecord::Train { tokens, loss, .. } if loss.is_finite() => train.push((tokens as f64 / 1e6, loss)),
            StepRecord::Valid { tokens, loss, .. } if loss.is_finite() => valid.push((tokens as f64 / 1e6, loss)),
            _ => {}
        }
    }
    if train.is_empty() {
        return Err("no training steps to plot".to_owned());
    }
    // A running mean over 1 % of the run, so the trend shows through the batch noise.
    let window = (train.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = train
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let from = i.saturating_sub(window - 1);
            (x, train[from..=i].iter().map(|p| p.1).sum::<f64>() / (i + 1 - from) as f64)
        })
        .collect();
    let max_x = train.iter().chain(&valid).map(|p| p.0).fold(0.0, f64::max).max(1e-6);
    let losses = || smooth.iter().chain(&valid).map(|p| p.1);
    let (lo, hi) = (losses().fold(f64::INFINITY, f64::min), losses().fold(f64::NEG_INFINITY, f64::max));

    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (1100, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(560);

        let mut chart = ChartBuilder::on(&left)
            .caption("loss", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_x, (lo - 0.05 * (hi - lo))..(hi + 0.05 * (hi - lo)))?;
        chart.configure_mesh().x_desc("tokens (M)").y_desc("loss").draw()?;
        chart
            .draw_series(LineSeries::new(smooth.iter().copied(), BLUE))?
            .label(format!("train (mean of {window})"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(valid.iter().copied(), RED.stroke_width(2)))?
            .label("validation")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart.draw_series(valid.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;

        if !valid.is_empty() {
            let ppl: Vec<(f64, f64)> = valid.iter().map(|&(x, l)| (x, l.exp())).collect();
            let top = ppl.iter().map(|p| p.1).fold(0.0, f64::max);
            let mut chart = ChartBuilder::on(&right)
                .caption("validation perplexity", ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..max_x, (1.0..top * 1.1).log_scale())?;
            chart.configure_mesh().x_desc("tokens (M)").y_desc("perplexity").draw()?;
            chart.draw_series(LineSeries::new(ppl.iter().copied(), RED.stroke_width(2)))?;
            chart.draw_series(ppl.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
        }
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}

/// `validation.svg` of `fira compare`: validation perplexity against tokens, one line per run.
pub fn plot_comparison(runs: &[(String, Vec<StepRecord>)], path: &Path) -> Result<(), String> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(name, records)| {
            let points = records
                .iter()
                .filter_map(|r| match *r {
                    StepRecord::Valid { tokens, perplexity, .. } if perplexity.is_finite() => Some((tokens as f64 / 1e6, perplexity)),
                    _ => None,
                })
                .collect();
            (name.as_str(), points)
        })
        .collect();
    let all = || curves.iter().flat_map(|c| c.1.iter());
    if all().next().is_none() {
        return Err("no validation points to plot".to_owned());
    }
    let max_x = all().map(|p| p.0).fold(0.0, f64::max).max(1e-6);
    let (lo, hi) = (all().map(|p| p.1).fold(f64::INFINITY, f64::min), all().map(|p| p.1).fold(0.0, f64::max));
    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (900, 550)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("validation perplexity", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, (lo * 0.95..hi * 1.05).log_scale())?;
        chart.configure_mesh().x_desc("tokens (M)").y_desc("perplexity").draw()?;
        for (i, (name, points)) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}

/// Renders the plot into memory and writes it atomically, so a reader never sees half a plot.
pub(crate) fn write_svg(path: &Path, draw: impl FnOnce(&mut String) -> Result<(), Box<dyn std::error::Error>>) -> Result<(), String> {
    let mut svg = String::new();
    draw(&mut svg).map_err(|e| format!("{}: {e}", path.display()))?;
    atomic_file::write(path, svg.as_bytes()).map_err(|e| e.to_string())
}
