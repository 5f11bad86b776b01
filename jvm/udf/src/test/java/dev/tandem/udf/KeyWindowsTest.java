package dev.tandem.udf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.junit.jupiter.api.Test;

/**
 * The incremental window operator equals a direct evaluation of every row's windows (the
 * reference evaluator's definition, {@code tandem/reference.py}) on adversarial streams: many
 * peers, rows exactly at {@code t - W}, arrival disorder, ids ordered differently by UTF-16 and
 * by code point, -0.0 next to 0.0, extreme doubles, long sums; state is serialized and restored
 * at random points (checkpoints), and the results stay the same.
 */
class KeyWindowsTest {
    // The row layout the operator receives: id, amount, flag, shop (the key is not passed).
    private static final List<String> NAMES = List.of("id", "amount", "flag", "shop");
    private static final List<WindowSpec.Kind> KINDS = List.of(
            WindowSpec.Kind.STRING, WindowSpec.Kind.DOUBLE, WindowSpec.Kind.LONG, WindowSpec.Kind.STRING);
    private static final String SPEC = "order=id;n_10=count/10;n_25=count/25;sum_10=sum/10/amount;"
            + "sum_25=sum/25/amount;avg_25=mean/25/amount;max_10=max/10/amount;min_25=min/25/amount;"
            + "flags_10=sum/10/flag;avg_flag_25=mean/25/flag;max_flag_25=max/25/flag;shops_25=distinct_count/25/shop;"
            + "amounts_10=distinct_count/10/amount;last_shop_25=last/25/shop;max_shop_10=max/10/shop";
    private static final String[] IDS = {"a", "b", "\uFF21", "\uD83D\uDE00", "ab", "B", "\uFB01"};
    private static final double[] AMOUNTS = {0.0, -0.0, 0.1, 0.2, 0.3, 1e16, 1.0, 1e308, 1e308, 5e-324, 2.5};

    @Test
    void incrementalWindowsEqualDirectEvaluation() {
        WindowSpec spec = WindowSpec.parse(SPEC, NAMES, KINDS);
        for (int seed = 0; seed < 300; seed++) {
            Random random = new Random(seed);
            List<Object[]> rows = new ArrayList<>();
            List<Long> times = new ArrayList<>();
            int n = 1 + random.nextInt(60);
            long t = 1000;
            for (int i = 0; i < n; i++) {
                t += random.nextInt(4) == 0 ? 0 : random.nextInt(3) == 0 ? 5 : random.nextInt(12);  // peers, edges
                times.add(t);
                rows.add(new Object[] {IDS[random.nextInt(IDS.length)] + i, AMOUNTS[random.nextInt(AMOUNTS.length)],
                        (long) random.nextInt(3) - 1, "s" + random.nextInt(4)});
            }
            List<Object[]> got = run(spec, rows, times, random);
            Map<String, Object[]> byId = new HashMap<>();
            for (Object[] r : got) byId.put((String) r[0], r);
            assertEquals(n, got.size(), "seed " + seed + ": one output row per input row");
            for (int i = 0; i < n; i++) {
                Object[] expected = direct(spec, rows, times, i);
                assertArrayEquals(expected, byId.get((String) rows.get(i)[0]), "seed " + seed + ", row " + i);
            }
        }
    }

    /**
     * Feeds rows in a disordered arrival order, firing timers in time order as a watermark would:
     * the watermark stays below every row still to come (the stream job drops late rows before
     * they reach the operator), and advances only now and then, so fires process batches.
     */
    private static List<Object[]> run(WindowSpec spec, List<Object[]> rows, List<Long> times, Random random) {
        List<Integer> arrival = new ArrayList<>();
        for (int i = 0; i < rows.size(); i++) arrival.add(i);
        for (int i = 0; i + 1 < arrival.size(); i++) {  // disorder: rows travel later by random swaps
            if (random.nextBoolean()) java.util.Collections.swap(arrival, i, i + 1);
        }
        KeyWindows windows = KeyWindows.create(spec);
        TreeMap<Long, Boolean> timers = new TreeMap<>();
        List<Object[]> out = new ArrayList<>();
        for (int k = 0; k < arrival.size(); k++) {
            int i = arrival.get(k);
            long time = times.get(i);
            if (windows.buffer(time, rows.get(i).clone())) timers.put(time, true);
            long watermark = Long.MAX_VALUE;
            for (int later = k + 1; later < arrival.size(); later++) watermark = Math.min(watermark, times.get(arrival.get(later)) - 1);
            while (random.nextInt(3) > 0 && !timers.isEmpty() && timers.firstKey() <= watermark) {
                out.addAll(windows.fire(spec, timers.pollFirstEntry().getKey()));
            }
            if (random.nextInt(5) == 0) windows = roundTrip(windows);
        }
        while (!timers.isEmpty()) out.addAll(windows.fire(spec, timers.pollFirstEntry().getKey()));
        return out;
    }

    private static KeyWindows roundTrip(KeyWindows windows) {
        try {
            DataOutputSerializer out = new DataOutputSerializer(64);
            new KeyWindowsSerializer().serialize(windows, out);
            KeyWindows restored = new KeyWindowsSerializer().deserialize(new DataInputDeserializer(out.getCopyOfBuffer()));
            return restored.copy();
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
    }

    /** Row i's output computed from scratch: its values, then each feature over [t - W, t]. */
    private static Object[] direct(WindowSpec spec, List<Object[]> rows, List<Long> times, int i) {
        long t = times.get(i);
        Object[] row = rows.get(i);
        Object[] result = java.util.Arrays.copyOf(row, row.length + spec.features.size());
        for (int f = 0; f < spec.features.size(); f++) {
            WindowSpec.Feature feature = spec.features.get(f);
            long from = t - spec.windowsMs[feature.window];
            List<Integer> window = new ArrayList<>();
            for (int j = 0; j < rows.size(); j++) {
                if (times.get(j) >= from && times.get(j) <= t) window.add(j);
            }
            window.sort(Comparator.<Integer>comparingLong(times::get)
                    .thenComparing((a, b) -> WindowSpec.compareCodePoints((String) rows.get(a)[0], (String) rows.get(b)[0])));
            int col = feature.column < 0 ? -1 : spec.columnPositions[feature.column];
            List<Object> values = new ArrayList<>();
            for (int j : window) values.add(col < 0 ? null : rows.get(j)[col]);
            result[row.length + f] = aggregate(feature, values);
        }
        return result;
    }

    private static Object aggregate(WindowSpec.Feature feature, List<Object> values) {
        switch (feature.agg) {
            case COUNT:
                return (long) values.size();
            case SUM:
            case MEAN: {
                if (feature.agg == WindowSpec.Agg.SUM && values.get(0) instanceof Long) {
                    long sum = 0;
                    for (Object v : values) sum += (Long) v;
                    return sum;
                }
                ExactSum sum = new ExactSum();
                for (Object v : values) sum.add(((Number) v).doubleValue());
                return feature.agg == WindowSpec.Agg.SUM ? sum.value() : sum.value() / values.size();
            }
            case MAX:
            case MIN: {  // Python's max/min: the first extreme value in window order
                Object best = values.get(0);
                for (Object v : values) {
                    int c = v instanceof Double d ? Double.compare(d == 0.0 ? 0.0 : d, (Double) best == 0.0 ? 0.0 : (Double) best)
                            : WindowSpec.order(v instanceof Long ? WindowSpec.Kind.LONG : WindowSpec.Kind.STRING).compare(v, best);
                    if (feature.agg == WindowSpec.Agg.MAX ? c > 0 : c < 0) best = v;
                }
                return best;
            }
            case DISTINCT_COUNT: {
                Set<Object> seen = new HashSet<>();
                for (Object v : values) seen.add(v instanceof Double d && d == 0.0 ? (Object) 0.0 : v);
                return (long) seen.size();
            }
            case LAST:
                return values.get(values.size() - 1);
            default:
                throw new AssertionError(feature.agg);
        }
    }

    @Test
    void peersAreOrderedByCodePointNotUtf16() {
        // U+FF21 sorts after U+1F600's surrogates in UTF-16 but before it in code points.
        assertTrue("\uFF21".compareTo("\uD83D\uDE00") > 0);
        assertTrue(WindowSpec.compareCodePoints("\uFF21", "\uD83D\uDE00") < 0);
        WindowSpec spec = WindowSpec.parse("order=id;last=last/10/shop", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        windows.buffer(5, new Object[] {"\uD83D\uDE00", 1.0, 0L, "emoji"});
        windows.buffer(5, new Object[] {"\uFF21", 1.0, 0L, "fullwidth"});
        for (Object[] out : windows.fire(spec, 5)) assertEquals("emoji", out[4]);
    }

    @Test
    void stateExpiresOnlyWhenTheNewestRowHasLeftTheWidestWindowAndNothingWaits() {
        WindowSpec spec = WindowSpec.parse("order=id;n=count/10;m=count/25", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        windows.buffer(100, new Object[] {"a", 1.0, 0L, "s"});
        assertTrue(!windows.expired(spec, 1000), "a row still waits");
        windows.fire(spec, 100);
        assertTrue(!windows.expired(spec, 125), "t - 25 is inside [t - W, t]");
        assertTrue(windows.expired(spec, 126));
        windows.buffer(130, new Object[] {"b", 1.0, 0L, "s"});
        assertTrue(!windows.expired(spec, 126));
    }

    @Test
    void aCopyIsIndependentOfTheOriginal() {
        WindowSpec spec = WindowSpec.parse(SPEC, NAMES, KINDS);
        KeyWindows a = KeyWindows.create(spec);
        a.buffer(1, new Object[] {"a", 1.0, 1L, "s1"});
        a.buffer(2, new Object[] {"b", 2.0, 1L, "s2"});
        a.fire(spec, 1);
        KeyWindows b = a.copy();
        Object[] fromA = a.fire(spec, 2).get(0);
        assertTrue(b.fire(spec, 1).isEmpty());
        b.buffer(2, new Object[] {"c", 5.0, 1L, "s3"});
        Object[] fromB = b.fire(spec, 2).stream().filter(r -> r[0].equals("c")).findFirst().orElseThrow();
        assertEquals(2L, fromA[5]);  // n_25 of a: rows a, b
        assertEquals(3L, fromB[5]);  // b got both its pending row b and the new row c
        assertEquals(3.0, fromA[7]);
        assertEquals(8.0, fromB[7]);
    }

    @Test
    void anIntegerSumThatLeavesInt64FailsInsteadOfWrapping() {
        WindowSpec spec = WindowSpec.parse("order=id;flags=sum/10/flag", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        windows.buffer(1, new Object[] {"a", 0.0, Long.MAX_VALUE, "s"});
        windows.buffer(2, new Object[] {"b", 0.0, 1L, "s"});
        windows.fire(spec, 1);
        ArithmeticException e = assertThrows(ArithmeticException.class, () -> windows.fire(spec, 2));
        assertTrue(e.getMessage().contains("flags"), e.getMessage());
    }

    @Test
    void badSpecsAreNamed() {
        for (String[] bad : new String[][] {
                {"n=count/10", "no order"},
                {"order=id;n=count/10/amount", "takes no column"},
                {"order=id;s=sum/10", "needs one column"},
                {"order=id;s=sum/10/shop", "STRING"},
                {"order=id;s=sum/10/nope", "no column nope"},
                {"order=id;s=median/10/amount", "unknown aggregation"},
                {"order=id;s=count/0", "positive"}}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> WindowSpec.parse(bad[0], NAMES, KINDS));
            assertTrue(e.getMessage().contains(bad[1]), bad[0] + ": " + e.getMessage());
        }
    }
}
