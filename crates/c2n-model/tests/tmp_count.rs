use c2n_model::{ModelConfig, Seq2Seq};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
fn cnt() -> u64 {
    let p = Tensor::zeros(1, DType::U8, &Device::Cpu).unwrap();
    format!("{:?}", p.id())
        .trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse()
        .unwrap()
}
#[test]
fn count() {
    for (enc, dec) in [(1usize, 1usize), (2, 1), (1, 2)] {
        let cfg = ModelConfig {
            num_hidden_layers: enc,
            decoder_layers: dec,
            vocab_size: 1000,
            ..ModelConfig::small()
        };
        let model = Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu).unwrap();
        let s = Tensor::new(&[[0u32, 5, 6, 2], [0, 7, 2, 1]], &Device::Cpu).unwrap();
        let t = Tensor::new(&[[0u32, 5, 6, 2], [0, 7, 2, 1]], &Device::Cpu).unwrap();
        let sm = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &Device::Cpu).unwrap();
        let c0 = cnt();
        let pass = model.training_pass(&s, &sm, &t, &sm, true).unwrap();
        let c1 = cnt();
        let _g = pass.backward(1.0).unwrap();
        let c2 = cnt();
        println!(
            "enc {enc} dec {dec}: forward {} backward {}",
            c1 - c0 - 1,
            c2 - c1 - 1
        );
    }
}
