/** Option validation happens in JS, before any native call. */
import { describe, expect, it } from 'vitest';
import { ConntrackMonitor } from '../dist/index.js';

describe('ConntrackMonitor options', () => {
  it('applies defaults', () => {
    expect(new ConntrackMonitor().options).toEqual({
      netnsPath: null,
      intervalMs: 1000,
      receiveBufferBytes: 32 * 1024 * 1024,
      resyncIntervalMs: 60_000,
      backend: 'auto',
      pressure: { warning: 0.75, critical: 0.9, hysteresis: 0.05 },
      snapshotOnPressure: false,
    });
  });

  it('accepts resyncIntervalMs 0 (no periodic re-dump)', () => {
    expect(new ConntrackMonitor({ resyncIntervalMs: 0 }).options.resyncIntervalMs).toBe(0);
  });

  it('resolves a bare namespace name under /var/run/netns and keeps paths', () => {
    expect(new ConntrackMonitor({ netns: 'blue' }).options.netnsPath).toBe('/var/run/netns/blue');
    expect(new ConntrackMonitor({ netns: '/proc/1/ns/net' }).options.netnsPath).toBe('/proc/1/ns/net');
  });

  it.each([
    [{ intervalMs: 0 }, /intervalMs must be an integer from 50 to 3600000, got 0/],
    [{ intervalMs: -1000 }, /intervalMs must be an integer from 50 to 3600000, got -1000/],
    [{ intervalMs: 1e12 }, /intervalMs must be an integer from 50 to 3600000/],
    [{ intervalMs: 100.5 }, /intervalMs must be an integer/],
    [{ intervalMs: '1000' }, /intervalMs must be an integer from 50 to 3600000, got "1000"/],
    [{ receiveBufferBytes: 1024 }, /receiveBufferBytes must be an integer from 4096 to 1073741824, got 1024/],
    [{ resyncIntervalMs: 10 }, /resyncIntervalMs must be an integer from 1000 to 86400000 or 0, got 10/],
    [{ receiveBufferBytes: Number.NaN }, /receiveBufferBytes must be an integer/],
    [{ netns: '' }, /netns must be a non-empty string, got ""/],
    [{ netns: 42 }, /netns must be a non-empty string, got 42/],
    [{ netns: 'a/b' }, /netns "a\/b" is neither an absolute path nor a namespace name/],
    [{ netns: '..' }, /netns "\.\." is neither/],
    [{ netns: '/var/run/netns/x\0' }, /netns must not contain control characters, got "\/var\/run\/netns\/x\\u0000"/],
    [{ netns: 'blue\nred' }, /netns must not contain control characters, got "blue\\nred"/],
    [{ backend: 'ebpf' }, /backend must be one of auto, netlink, proc, got "ebpf"/],
    [{ interval: 1000 }, /options has an unknown option "interval"/],
    [null, /options must be an object, got null/],
    [[], /options must be an object, got an array/],
    [{ pressure: 'high' }, /pressure must be an object, got "high"/],
    [{ intervalMs: {} }, /intervalMs must be an integer from 50 to 3600000, got an object/],
  ])('rejects %j with a TypeError naming the option', (options, message) => {
    expect(() => new ConntrackMonitor(options as never)).toThrow(TypeError);
    expect(() => new ConntrackMonitor(options as never)).toThrow(message);
  });

  it('reads only own properties: values inherited through the prototype are ignored', () => {
    const inherited = Object.create({ intervalMs: 5, netns: 'x' }) as object;
    expect(new ConntrackMonitor(inherited).options).toMatchObject({ intervalMs: 1000, netnsPath: null });
  });
});
