//! Plugging Fira into your own Burn model: a small network is fitted to a fixed random
//! "teacher" network with Fira, GaLore and AdamW from the same initialisation, on the CPU.
//!
//! `cargo run --release -p fira-optim --example quickstart [-- ndarray|flex]`

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData, activation::gelu};
use fira_optim::{Algorithm, FiraConfig, FiraError};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// Any Burn model works: Fira projects the 2-D weights whose module path matches the target
/// patterns (`attn`, `mlp` by default), every other parameter takes the AdamW path.
#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

#[derive(Module, Debug)]
struct Network<B: Backend> {
    mlp: Mlp<B>,
    head: Linear<B>,
}

impl<B: Backend> Network<B> {
    fn new(width: usize, hidden: usize, outputs: usize, device: &B::Device) -> Self {
        Self {
            mlp: Mlp { up_proj: LinearConfig::new(width, hidden).init(device), down_proj: LinearConfig::new(hidden, width).init(device) },
            head: LinearConfig::new(width, outputs).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = x.clone() + self.mlp.down_proj.forward(gelu(self.mlp.up_proj.forward(x)));
        self.head.forward(h)
    }
}

const WIDTH: usize = 128;
const HIDDEN: usize = 512;
const OUTPUTS: usize = 32;
const STEPS: usize = 600;
const BATCH: usize = 128;

/// Trains `model` on batches labelled by `teacher`; returns the loss every 100 steps.
fn train<B: AutodiffBackend>(
    config: &FiraConfig,
    mut model: Network<B>,
    teacher: &Network<B::InnerBackend>,
    device: &B::Device,
) -> Result<Vec<f32>, FiraError> {
    let mut optimizer = config.init(&model)?;
    if config.algorithm != Algorithm::AdamW {
        println!("{}\n", optimizer.selection());
    }
    // Batches come from a seeded host generator: every optimizer sees the same data on any backend.
    let mut rng = StdRng::seed_from_u64(42);
    let mut losses = vec![];
    for step in 1..=STEPS {
        let values: Vec<f32> = (0..BATCH * WIDTH).map(|_| StandardNormal.sample(&mut rng)).collect();
        let x = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(values, [BATCH, WIDTH]), device);
        let target = Tensor::<B, 2>::from_inner(teacher.forward(x.clone()));
        let loss = (model.forward(Tensor::from_inner(x)) - target).square().mean();
        if step % 100 == 0 || step == 1 {
            losses.push(loss.clone().into_scalar().elem::<f32>());
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = 3e-3 * (1.0 + (std::f64::consts::PI * step as f64 / STEPS as f64).cos()) / 2.0;
        model = optimizer.step(lr, model, grads);
        for skipped in optimizer.take_skipped() {
            eprintln!("skipped {}: {:?}", skipped.path, skipped.reason);
        }
    }
    let held = optimizer.memory_report().total_state_bytes();
    println!("{:<8} optimizer state held: {held} bytes", format!("{:?}", config.algorithm));
    Ok(losses)
}

/// Burn initialises parameters lazily, and a clone taken before first use draws its own
/// weights: reading every parameter once makes the clones handed to each optimizer identical.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}

fn run<B: AutodiffBackend>(device: B::Device) -> Result<(), FiraError> {
    B::seed(&device, 7);
    let teacher = Network::<B::InnerBackend>::new(WIDTH, HIDDEN, OUTPUTS, &device);
    let student = Network::<B>::new(WIDTH, HIDDEN, OUTPUTS, &device);
    student.visit(&mut Materialize);

    // Rank 16 of 128: the low-rank constraint binds. α and T scaled to this short run.
    let low_rank = FiraConfig::new().with_rank(16).with_update_proj_gap(50).with_alpha(0.25);
    let configs =
        [low_rank.clone(), low_rank.clone().with_algorithm(Algorithm::GaLore), FiraConfig::new().with_algorithm(Algorithm::AdamW)];
    let mut curves = vec![];
    for config in &configs {
        curves.push((config.algorithm, train(config, student.clone(), &teacher, &device)?));
    }
    println!("\nloss (mean squared error against the teacher)");
    print!("{:>6}", "step");
    for (algorithm, _) in &curves {
        print!("{:>12}", format!("{algorithm:?}"));
    }
    println!();
    for (row, step) in [1, 100, 200, 300, 400, 500, 600].iter().enumerate() {
        print!("{step:>6}");
        for (_, losses) in &curves {
            print!("{:>12.5}", losses[row]);
        }
        println!();
    }
    Ok(())
}

fn main() {
    let backend = std::env::args().nth(1).unwrap_or_else(|| "flex".to_owned());
    let result = match backend.as_str() {
        "flex" => run::<Autodiff<Flex>>(Default::default()),
        "ndarray" => run::<Autodiff<NdArray<f32>>>(Default::default()),
        other => {
            eprintln!("error: unknown backend `{other}` (use flex or ndarray)");
            std::process::exit(2);
        }
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
}
