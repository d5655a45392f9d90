/**
 * `marginlab bench heads|exclusive|pfc [options]`: the speed and scale benchmarks (bench/*.ts), each
 * beside its PyTorch peer (bench/peers/*.py, run with .venv-peers/bin/python). Benchmarks are never tests.
 */
export const summary = "speed/memory benchmarks against PyTorch: bench heads | exclusive | pfc [--quick] [--no-peer]";

const BENCHES: Record<string, () => Promise<{ run(args: string[]): Promise<number> }>> = {
  heads: () => import("../../bench/heads"),
  exclusive: () => import("../../bench/exclusive"),
  pfc: () => import("../../bench/pfc"),
};

const HELP = `usage: marginlab bench <heads|exclusive|pfc> [options]
  heads       ArcFace step (B=256, D=512) at C=10,000 and 100,000 vs PyTorch
              --classes 10000,100000  --repeats 7  --warmup 2  --no-peer  --no-head  --no-pfc
  exclusive   RegularFace exclusive regularization: exact tiled form vs PML's dense one
              --classes 10000,100000  --dense 10000,20000  --ours-dense-max 10000  --tile 4096  --no-peer
  pfc         Partial FC r=0.1 at C=1,000,000 (and r=1 at C=100,000), with the stochastic exclusive term
              --classes 1000000  --rate 0.1  --repeats 7  --warmup 5  --no-peer  --no-frozen
  common      --quick (small sizes, a smoke run)`;

export async function run(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h") {
    console.log(HELP);
    return name ? 0 : 2;
  }
  const load = BENCHES[name];
  if (!load) {
    console.error(`marginlab bench: unknown benchmark "${name}". Allowed: ${Object.keys(BENCHES).join(", ")}.`);
    return 2;
  }
  const bench = await load();
  return bench.run(rest);
}
