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
 * The incremental window operator equals a direct evaluation of every row's windows (the rules of
 * {@code transforms/aggregations.py}, as {@code tandem/reference.py} applies them) on adversarial
 * streams: many peers, rows exactly at {@code t - W}, arrival disorder, ids ordered differently by
 * UTF-16 and by code point, -0.0 next to 0.0, extreme doubles, long sums, and columns mostly or
 * only null; state is serialized and restored at random points (checkpoints), and the results
 * stay the same.
 */
class KeyWindowsTest {
    // The row layout the operator receives: id, amount, flag, shop, paid (the key is not passed).
    private static final List<String> NAMES = List.of("id", "amount", "flag", "shop", "paid");
    private static final List<WindowSpec.Kind> KINDS = List.of(WindowSpec.Kind.STRING, WindowSpec.Kind.DOUBLE,
            WindowSpec.Kind.LONG, WindowSpec.Kind.STRING, WindowSpec.Kind.BOOLEAN);
    private static final String SPEC = "order=id;n_10=count/10;n_25=count/25;sum_10=sum/10/amount;"
            + "sum_25=sum/25/amount;avg_25=mean/25/amount;max_10=max/10/amount;min_25=min/25/amount;"
            + "flags_10=sum/10/flag;avg_flag_25=mean/25/flag;max_flag_25=max/25/flag;shops_25=distinct_count/25/shop;"
            + "amounts_10=distinct_count/10/amount;last_shop_25=last/25/shop;max_shop_10=max/10/shop";
    /** Every aggregation of every column type, over three windows (the shortest, [t - 1, t], holds few rows). */
    private static final String NULLS_SPEC = "order=id;n_1=count/1;n_10=count/10;n_25=count/25;"
            + "sum_10=sum/10/amount;avg_25=mean/25/amount;min_10=min/10/amount;max_25=max/25/amount;"
            + "flags_25=sum/25/flag;flags_1=sum/1/flag;avg_flag_10=mean/10/flag;min_flag_25=min/25/flag;"
            + "max_flag_10=max/10/flag;shops_10=distinct_count/10/shop;amounts_25=distinct_count/25/amount;"
            + "flag_values_10=distinct_count/10/flag;paid_values_25=distinct_count/25/paid;"
            + "paid_values_1=distinct_count/1/paid;last_shop_10=last/10/shop;last_amount_25=last/25/amount;"
            + "last_flag_10=last/10/flag;last_paid_1=last/1/paid;last_paid_10=last/10/paid;last_paid_25=last/25/paid;"
            + "max_shop_25=max/25/shop";
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
                        (long) random.nextInt(3) - 1, "s" + random.nextInt(4), random.nextBoolean()});
            }
            assertRunEqualsDirect(spec, rows, times, random, "seed " + seed);
        }
    }

    /**
     * Streams where each column is null with its own chance (none, some, most, all): every
     * aggregate skips the nulls, count still counts rows, and a window without a value has null
     * aggregates and no distinct values. Many peers and rows exactly W apart, so nulls sit at the
     * window edges and as the latest peer.
     */
    @Test
    void nullsAreSkippedAsTheRulesSay() {
        WindowSpec spec = WindowSpec.parse(NULLS_SPEC, NAMES, KINDS);
        double[] nullChances = {0.0, 0.3, 0.8, 0.95, 1.0};
        for (int seed = 0; seed < 400; seed++) {
            Random random = new Random(1000 + seed);
            double[] chance = new double[NAMES.size()];
            for (int c = 1; c < chance.length; c++) chance[c] = nullChances[random.nextInt(nullChances.length)];
            List<Object[]> rows = new ArrayList<>();
            List<Long> times = new ArrayList<>();
            int n = 1 + random.nextInt(80);
            long t = 1000;
            for (int i = 0; i < n; i++) {
                int step = random.nextInt(6);
                t += step <= 1 ? 0 : step == 2 ? 1 : step == 3 ? 10 : step == 4 ? 25 : random.nextInt(30);
                times.add(t);
                Object[] row = {IDS[random.nextInt(IDS.length)] + i, (double) random.nextInt(4) - 1.5,
                        (long) random.nextInt(5) - 2, "s" + random.nextInt(3), random.nextBoolean()};
                for (int c = 1; c < row.length; c++) if (random.nextDouble() < chance[c]) row[c] = null;
                rows.add(row);
            }
            assertRunEqualsDirect(spec, rows, times, random, "seed " + seed);
        }
    }

    private static void assertRunEqualsDirect(WindowSpec spec, List<Object[]> rows, List<Long> times, Random random,
                                              String what) {
        List<Object[]> got = run(spec, rows, times, random);
        Map<String, Object[]> byId = new HashMap<>();
        for (Object[] r : got) byId.put((String) r[0], r);
        assertEquals(rows.size(), got.size(), what + ": one output row per input row");
        for (int i = 0; i < rows.size(); i++) {
            Object[] expected = direct(spec, rows, times, i);
            assertArrayEquals(expected, byId.get((String) rows.get(i)[0]), what + ", row " + i);
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
        WindowTables tables = WindowTables.inMemory();
        TreeMap<Long, Boolean> timers = new TreeMap<>();
        List<Object[]> out = new ArrayList<>();
        for (int k = 0; k < arrival.size(); k++) {
            int i = arrival.get(k);
            long time = times.get(i);
            if (windows.buffer(tables, time, rows.get(i).clone())) timers.put(time, true);
            long watermark = Long.MAX_VALUE;
            for (int later = k + 1; later < arrival.size(); later++) watermark = Math.min(watermark, times.get(arrival.get(later)) - 1);
            while (random.nextInt(3) > 0 && !timers.isEmpty() && timers.firstKey() <= watermark) {
                out.addAll(windows.fire(spec, tables, timers.pollFirstEntry().getKey()));
            }
            if (random.nextInt(5) == 0) windows = roundTrip(windows);
        }
        while (!timers.isEmpty()) out.addAll(windows.fire(spec, tables, timers.pollFirstEntry().getKey()));
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

    /**
     * Row i's output computed from scratch, from the rules alone: the rows with time in [t - W, t]
     * in window order (time, then id in code point order), the column's nulls skipped, aggregated.
     */
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
                    .thenComparing((a, b) -> codePointOrder((String) rows.get(a)[0], (String) rows.get(b)[0])));
            List<Object> values = new ArrayList<>();
            if (feature.column >= 0) {
                int col = spec.columnPositions[feature.column];
                for (int j : window) if (rows.get(j)[col] != null) values.add(rows.get(j)[col]);
            }
            result[row.length + f] = feature.agg == WindowSpec.Agg.COUNT ? (Object) (long) window.size()
                    : aggregate(feature, values);
        }
        return result;
    }

    private static int codePointOrder(String a, String b) {
        return java.util.Arrays.compare(a.codePoints().toArray(), b.codePoints().toArray());
    }

    /** One aggregate of a window's non-null values, in window order. */
    private static Object aggregate(WindowSpec.Feature feature, List<Object> values) {
        if (feature.agg == WindowSpec.Agg.DISTINCT_COUNT) {
            Set<Object> seen = new HashSet<>();
            for (Object v : values) seen.add(v instanceof Double d && d == 0.0 ? (Object) 0.0 : v);
            return (long) seen.size();
        }
        if (values.isEmpty()) return null;
        switch (feature.agg) {
            case SUM:
            case MEAN: {
                if (feature.agg == WindowSpec.Agg.SUM && values.get(0) instanceof Long) {
                    long sum = 0;
                    for (Object v : values) sum += (Long) v;
                    return sum;
                }
                ExactSum sum = new ExactSum();  // math.fsum: tested against BigDecimal in ExactSumTest
                for (Object v : values) sum.add(((Number) v).doubleValue());
                return feature.agg == WindowSpec.Agg.SUM ? sum.value() : sum.value() / values.size();
            }
            case MAX:
            case MIN: {  // Python's max/min: the first extreme value in window order
                Object best = values.get(0);
                for (Object v : values) {
                    int c = v instanceof Double d ? Double.compare(d == 0.0 ? 0.0 : d, (Double) best == 0.0 ? 0.0 : (Double) best)
                            : v instanceof Long l ? Long.compare(l, (Long) best) : codePointOrder((String) v, (String) best);
                    if (feature.agg == WindowSpec.Agg.MAX ? c > 0 : c < 0) best = v;
                }
                return best;
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
        WindowTables tables = WindowTables.inMemory();
        windows.buffer(tables, 5, new Object[] {"\uD83D\uDE00", 1.0, 0L, "emoji"});
        windows.buffer(tables, 5, new Object[] {"\uFF21", 1.0, 0L, "fullwidth"});
        for (Object[] out : windows.fire(spec, tables, 5)) assertEquals("emoji", out[4]);
    }

    /** The features of the rows {@code rows} (id, amount, flag, shop, paid) at {@code time}, by id. */
    private static Map<String, Object[]> fire(WindowSpec spec, KeyWindows windows, WindowTables tables, long time,
                                             Object[]... rows) {
        for (Object[] row : rows) windows.buffer(tables, time, row);
        Map<String, Object[]> byId = new HashMap<>();
        for (Object[] out : windows.fire(spec, tables, time)) {
            byId.put((String) out[0], java.util.Arrays.copyOfRange(out, NAMES.size(), out.length));
        }
        return byId;
    }

    @Test
    void aWindowWithoutValuesHasNullAggregatesAndNoDistinctValuesButCountsItsRows() {
        WindowSpec spec = WindowSpec.parse("order=id;n=count/10;sum=sum/10/amount;flags=sum/10/flag;avg=mean/10/flag;"
                + "min=min/10/amount;max=max/10/flag;shops=distinct_count/10/shop;paids=distinct_count/10/paid;"
                + "last=last/10/shop;paid=last/10/paid", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        Object[] none = {2L, null, null, null, null, null, 0L, 0L, null, null};
        Map<String, Object[]> out = fire(spec, windows, tables, 5, new Object[] {"a", null, null, null, null},
                new Object[] {"b", null, null, null, null});
        assertArrayEquals(none, out.get("a"));
        assertArrayEquals(none, out.get("b"));
        out = fire(spec, windows, tables, 6, new Object[] {"c", 1.5, 0L, "s", false});
        assertArrayEquals(new Object[] {3L, 1.5, 0L, 0.0, 1.5, 0L, 1L, 1L, "s", false}, out.get("c"));
        // The values leave with c (6 < 17 - 10); rows a and b were never counted as values.
        out = fire(spec, windows, tables, 17, new Object[] {"d", null, null, null, null});
        assertArrayEquals(new Object[] {1L, null, null, null, null, null, 0L, 0L, null, null}, out.get("d"));
    }

    @Test
    void nullsAtTheWindowEdges() {
        WindowSpec spec = WindowSpec.parse("order=id;n=count/10;sum=sum/10/amount;last=last/10/amount;"
                + "min=min/10/amount", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        assertArrayEquals(new Object[] {1L, 1.0, 1.0, 1.0}, fire(spec, windows, tables, 0, row("a", 1.0)).get("a"));
        // t - W = 0: a, the only value, is inside at the left edge; the null at t is counted, not summed.
        assertArrayEquals(new Object[] {2L, 1.0, 1.0, 1.0}, fire(spec, windows, tables, 10, row("b", null)).get("b"));
        // a has left; b (null) is at the left edge, c (null) at t.
        assertArrayEquals(new Object[] {2L, null, null, null}, fire(spec, windows, tables, 20, row("c", null)).get("c"));
        assertArrayEquals(new Object[] {2L, 3.0, 3.0, 3.0}, fire(spec, windows, tables, 30, row("d", 3.0)).get("d"));
        // d at the left edge is the last value although two later rows are null.
        assertArrayEquals(new Object[] {3L, 3.0, 3.0, 3.0}, fire(spec, windows, tables, 40, row("e", null), row("f", null)).get("f"));
        assertArrayEquals(new Object[] {3L, null, null, null}, fire(spec, windows, tables, 41, row("g", null)).get("g"));
    }

    private static Object[] row(String id, Double amount) {
        return new Object[] {id, amount, null, null, null};
    }

    @Test
    void lastFallsBackFromANullLatestPeerToTheLatestValue() {
        WindowSpec spec = WindowSpec.parse("order=id;shop=last/10/shop;paid=last/10/paid;paid_1=last/1/paid", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        Map<String, Object[]> out = fire(spec, windows, tables, 3, new Object[] {"z", null, null, "old", true});
        assertArrayEquals(new Object[] {"old", true, true}, out.get("z"));
        // Peers at 5 in id order a, b, c: the latest (c) and b have no shop; a's shop is the last one.
        // Only b has paid (false); b is also the latest paid value for the 1 ms window.
        out = fire(spec, windows, tables, 5, new Object[] {"c", null, null, null, null},
                new Object[] {"a", null, null, "new", null}, new Object[] {"b", null, null, null, false});
        for (String id : List.of("a", "b", "c")) assertArrayEquals(new Object[] {"new", false, false}, out.get(id), id);
        // At 6 the 1 ms window [5, 6] still holds b; at 7 it holds only the null row d.
        assertArrayEquals(new Object[] {"new", false, false}, fire(spec, windows, tables, 6, new Object[] {"d", null, null, null, null}).get("d"));
        assertArrayEquals(new Object[] {"new", false, null}, fire(spec, windows, tables, 7, new Object[] {"e", null, null, null, null}).get("e"));
        // At 14 the 10 ms window [4, 14] has lost z but still holds a and b.
        assertArrayEquals(new Object[] {"new", false, null}, fire(spec, windows, tables, 14, new Object[] {"f", null, null, null, null}).get("f"));
        assertArrayEquals(new Object[] {null, null, null}, fire(spec, windows, tables, 16, new Object[] {"g", null, null, null, null}).get("g"));
    }

    @Test
    void booleanColumnsHaveALastValueAndDistinctValues() {
        WindowSpec spec = WindowSpec.parse("order=id;paid=last/10/paid;kinds=distinct_count/10/paid", NAMES, KINDS);
        assertEquals(WindowSpec.Kind.BOOLEAN, spec.features.get(0).result);
        assertEquals(WindowSpec.Kind.LONG, spec.features.get(1).result);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        assertArrayEquals(new Object[] {true, 1L}, fire(spec, windows, tables, 1, new Object[] {"a", null, null, null, true}).get("a"));
        assertArrayEquals(new Object[] {true, 1L}, fire(spec, windows, tables, 2, new Object[] {"b", null, null, null, true}).get("b"));
        assertArrayEquals(new Object[] {false, 2L}, fire(spec, windows, tables, 3, new Object[] {"c", null, null, null, false}).get("c"));
        assertArrayEquals(new Object[] {false, 2L}, fire(spec, windows, tables, 4, new Object[] {"d", null, null, null, null}).get("d"));
        assertArrayEquals(new Object[] {false, 2L}, fire(spec, windows, tables, 12, new Object[] {"e", null, null, null, null}).get("e"));
        assertArrayEquals(new Object[] {false, 1L}, fire(spec, windows, tables, 13, new Object[] {"f", null, null, null, null}).get("f"));
        assertArrayEquals(new Object[] {true, 1L}, fire(spec, windows, tables, 14, new Object[] {"g", null, null, null, true}).get("g"));
        assertArrayEquals(new Object[] {true, 1L}, fire(spec, windows, tables, 24, new Object[] {"h", null, null, null, null}).get("h"));
        assertArrayEquals(new Object[] {null, 0L}, fire(spec, windows, tables, 25, new Object[] {"i", null, null, null, null}).get("i"));
    }

    @Test
    void stateExpiresOnlyWhenTheNewestRowHasLeftTheWidestWindowAndNothingWaits() {
        WindowSpec spec = WindowSpec.parse("order=id;n=count/10;m=count/25", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        windows.buffer(tables, 100, new Object[] {"a", 1.0, 0L, "s"});
        assertTrue(!windows.expired(spec, 1000), "a row still waits");
        windows.fire(spec, tables, 100);
        assertTrue(!windows.expired(spec, 125), "t - 25 is inside [t - W, t]");
        assertTrue(windows.expired(spec, 126));
        windows.buffer(tables, 130, new Object[] {"b", 1.0, 0L, "s"});
        assertTrue(!windows.expired(spec, 126));
    }

    @Test
    void aKeyKeepsOnlyTheRowsOfItsWidestWindow() {
        // Every table entry a row brings (its row, deque positions, multiset counts) goes when the row
        // leaves: what a key keeps is bounded by its widest window, not by how many rows it ever had.
        WindowSpec spec = WindowSpec.parse("order=id;n=count/10;sum=sum/10/amount;min=min/25/amount;"
                + "max=max/10/flag;shops=distinct_count/25/shop;last=last/25/paid", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        Random random = new Random(7);
        for (long t = 0; t < 2000; t++) {
            // rising amounts (min) and falling flags (max) keep every row in the deques; shops repeat and vary
            fire(spec, windows, tables, t, new Object[] {"r" + t, (double) t, 5000 - t, "s" + random.nextInt(40), t % 2 == 0});
        }
        int inWidest = 26;  // rows at 1974..1999: [t - 25, t]
        // rows, the min deque (25 ms), the max deque (10 ms), the shops seen in 25 ms
        assertTrue(tables.size() <= inWidest + inWidest + 11 + inWidest, "entries kept: " + tables.size());
        assertTrue(tables.size() > inWidest + inWidest + 11, "the deques are full: " + tables.size());
        assertTrue(windows.expired(spec, 1999 + 26));
    }

    @Test
    void aCopyIsIndependentOfTheOriginal() {
        WindowSpec spec = WindowSpec.parse(SPEC, NAMES, KINDS);
        KeyWindows a = KeyWindows.create(spec);
        WindowTables tablesA = WindowTables.inMemory();
        a.buffer(tablesA, 1, new Object[] {"a", 1.0, 1L, "s1"});
        a.buffer(tablesA, 2, new Object[] {"b", 2.0, 1L, "s2"});
        a.fire(spec, tablesA, 1);
        KeyWindows b = a.copy();
        WindowTables tablesB = tablesA.copy();
        Object[] fromA = a.fire(spec, tablesA, 2).get(0);
        assertTrue(b.fire(spec, tablesB, 1).isEmpty());
        b.buffer(tablesB, 2, new Object[] {"c", 5.0, 1L, "s3"});
        Object[] fromB = b.fire(spec, tablesB, 2).stream().filter(r -> r[0].equals("c")).findFirst().orElseThrow();
        assertEquals(2L, fromA[5]);  // n_25 of a: rows a, b
        assertEquals(3L, fromB[5]);  // b got both its pending row b and the new row c
        assertEquals(3.0, fromA[7]);
        assertEquals(8.0, fromB[7]);
    }

    @Test
    void anIntegerSumThatLeavesInt64FailsInsteadOfWrapping() {
        WindowSpec spec = WindowSpec.parse("order=id;flags=sum/10/flag", NAMES, KINDS);
        KeyWindows windows = KeyWindows.create(spec);
        WindowTables tables = WindowTables.inMemory();
        windows.buffer(tables, 1, new Object[] {"a", 0.0, Long.MAX_VALUE, "s"});
        windows.buffer(tables, 2, new Object[] {"b", 0.0, 1L, "s"});
        windows.fire(spec, tables, 1);
        ArithmeticException e = assertThrows(ArithmeticException.class, () -> windows.fire(spec, tables, 2));
        assertTrue(e.getMessage().contains("flags"), e.getMessage());
    }

    @Test
    void badSpecsAreNamed() {
        for (String[] bad : new String[][] {
                {"n=count/10", "no order"},
                {"order=id;n=count/10/amount", "takes no column"},
                {"order=id;s=sum/10", "needs one column"},
                {"order=id;s=sum/10/shop", "STRING"},
                {"order=id;s=mean/10/paid", "BOOLEAN"},
                {"order=id;s=max/10/paid", "BOOLEAN"},
                {"order=id;s=sum/10/nope", "no column nope"},
                {"order=id;s=median/10/amount", "unknown aggregation"},
                {"order=id;s=count/0", "positive"}}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> WindowSpec.parse(bad[0], NAMES, KINDS));
            assertTrue(e.getMessage().contains(bad[1]), bad[0] + ": " + e.getMessage());
        }
    }
}
