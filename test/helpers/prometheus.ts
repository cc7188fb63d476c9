/**
 * A real Prometheus (Debian's `prometheus`, installed by .ci/run) for tests: it scrapes one
 * target on loopback every second, optionally evaluates rule files every second, and answers
 * PromQL and its alerts API. Its data lives in a temporary directory; stop() ends it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether `prometheus` runs here; under CI=true it must. */
export const prometheusAvailable = (() => {
  try {
    execFileSync('prometheus', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('prometheus (Debian package prometheus) is required under CI=true');
    return false;
  }
})();

/** A free TCP port on 127.0.0.1 (found at run time). */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** An alert as Prometheus' /api/v1/alerts lists it. */
export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export interface RunningPrometheus {
  /** The first result of an instant query at the current time, or NaN. */
  query(promql: string): Promise<number>;
  /** Every pending or firing alert. */
  alerts(): Promise<PrometheusAlert[]>;
  stop(): void;
}

/** Prometheus scraping 127.0.0.1:`target` every second, evaluating `rules` (YAML texts) every second. */
export async function startPrometheus(target: number, rules: string[] = []): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ctmon-prom-'));
  const ruleFiles = rules.map((text, i) => {
    const file = join(dir, `rules-${i}.yml`);
    writeFileSync(file, text);
    return file;
  });
  writeFileSync(
    join(dir, 'prometheus.yml'),
    'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }\n' +
      (ruleFiles.length ? `rule_files: [${ruleFiles.map((f) => `'${f}'`).join(', ')}]\n` : '') +
      `scrape_configs:\n  - job_name: serve\n    static_configs: [{ targets: ['127.0.0.1:${target}'] }]\n`,
  );
  const port = await freePort();
  const child = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: 'ignore' },
  );
  const stop = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const api = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if ((await fetch(`${api}/-/ready`).catch(() => null))?.ok) break;
    if (i > 100) {
      stop();
      throw new Error('prometheus did not become ready');
    }
    await sleep(100);
  }
  return {
    query: async (promql) => {
      const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const json = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return Number(json.data.result[0]?.value[1] ?? NaN);
    },
    alerts: async () => {
      const res = await fetch(`${api}/api/v1/alerts`);
      return ((await res.json()) as { data: { alerts: PrometheusAlert[] } }).data.alerts;
    },
    stop,
  };
}
