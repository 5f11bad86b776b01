package dev.tandem.udf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** ExactSum against hand cases (expected values from Python's math.fsum) and a BigDecimal oracle. */
class ExactSumTest {
    private static final double MAX = Double.MAX_VALUE;

    private static ExactSum of(double... xs) {
        ExactSum s = new ExactSum();
        for (double x : xs) s.add(x);
        return s;
    }

    /** Bitwise equality: distinguishes 0.0 from -0.0. */
    private static void assertBits(double expected, double actual) {
        assertEquals(Double.doubleToRawLongBits(expected), Double.doubleToRawLongBits(actual),
                () -> "expected " + expected + " but was " + actual);
    }

    @Test
    void roundsTheExactSumNotTheRunningSum() {
        assertBits(1.0000000000000002e16, of(1e16, 1, 1).value());
        assertBits(1.0000000000000002e16, of(1, 1, 1e16).value());
        assertBits(1.0, of(0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1).value());
    }

    @Test
    void removalIsExact() {
        // Measured: Flink's retracting bounded OVER SUM gave -0.9 and -1.7 here.
        ExactSum s = of(1e16, 1, 1);
        s.remove(1e16);
        s.remove(1);
        assertBits(1.0, s.value());
        s.add(0.1);
        assertBits(1.1, s.value());
        s.remove(1);
        s.add(0.2);
        assertBits(0.30000000000000004, s.value());
        assertEquals(2, s.count());
    }

    @Test
    void halfEvenTies() {
        assertBits(1e16, of(1e16, 1).value());
        assertBits(1.0000000000000004e16, of(1e16 + 2, 1).value());
        assertBits(1.0000000000000002e16, of(1e-16, 1, 1e16).value());  // CPython's correction step
        assertBits(1.0, of(1, 0x1p-53).value());
        assertBits(1.0000000000000002, of(1, 0x1p-53, 0x1p-105).value());
        assertBits(1.0000000000000004, of(1 + 0x1p-52, 0x1p-53).value());
    }

    @Test
    void overflowIsInfinityAndRecovers() {
        assertBits(Double.POSITIVE_INFINITY, of(1e308, 1e308).value());
        assertBits(1e308, of(1e308, 1e308, -1e308).value());
        assertBits(Double.NEGATIVE_INFINITY, of(-MAX, -MAX).value());
        assertBits(MAX, of(MAX, MAX, MAX, -MAX, -MAX).value());
        assertBits(Double.POSITIVE_INFINITY, of(MAX, 0x1p970).value());  // tie at the edge rounds up
        assertBits(MAX, of(MAX, 0x1p970, -Double.MIN_VALUE).value());
        ExactSum s = of(MAX, MAX, 1.5);
        s.remove(MAX);
        s.remove(MAX);
        assertBits(1.5, s.value());
        s.add(0.25);
        assertBits(1.75, s.value());
    }

    @Test
    void zerosAndSubnormals() {
        assertBits(0.0, new ExactSum().value());
        assertBits(0.0, of(-0.0).value());
        assertBits(0.0, of(-0.0, -0.0).value());
        ExactSum s = of(-1e-300);
        s.remove(-1e-300);
        assertBits(0.0, s.value());
        assertBits(2 * Double.MIN_VALUE, of(Double.MIN_VALUE, Double.MIN_VALUE).value());
    }

    @Test
    void nonFiniteValuesAreCountedSoTheyCanLeave() {
        ExactSum s = of(1, Double.POSITIVE_INFINITY);
        assertBits(Double.POSITIVE_INFINITY, s.value());
        s.add(Double.NEGATIVE_INFINITY);
        assertTrue(Double.isNaN(s.value()));
        s.remove(Double.POSITIVE_INFINITY);
        s.remove(Double.NEGATIVE_INFINITY);
        s.add(Double.NaN);
        assertTrue(Double.isNaN(s.value()));
        s.remove(Double.NaN);
        assertBits(1.0, s.value());
    }

    @Test
    void conversionIsCorrectlyRounded() {
        Random rnd = new Random(7);
        for (int i = 0; i < 20000; i++) {
            BigDecimal exact = new BigDecimal(randomDouble(rnd)).add(new BigDecimal(randomDouble(rnd)));
            double ours = ExactSum.toDouble(toUnits(exact));
            assertCorrectlyRounded(exact, ours);
            // JDK 17's BigDecimal.doubleValue/parseDouble agree (kept as a check, not relied on).
            assertBits(ours, exact.doubleValue());
        }
    }

    /** Random adds and removes of adversarial values, checked against the exact BigDecimal sum. */
    @Test
    void matchesBigDecimalOracleUnderAddsRemovesAndReordering() {
        Random rnd = new Random(42);
        for (int round = 0; round < 200; round++) {
            ExactSum s = new ExactSum();
            List<Double> held = new ArrayList<>();
            BigDecimal exact = BigDecimal.ZERO;
            for (int op = 0; op < 60; op++) {
                if (!held.isEmpty() && rnd.nextInt(3) == 0) {
                    double x = held.remove(rnd.nextInt(held.size()));
                    s.remove(x);
                    exact = exact.subtract(new BigDecimal(x));
                } else {
                    double x = rnd.nextInt(4) == 0 && !held.isEmpty() ? -held.get(rnd.nextInt(held.size()))
                            : randomDouble(rnd);
                    held.add(x);
                    s.add(x);
                    exact = exact.add(new BigDecimal(x));
                }
                assertCorrectlyRounded(exact, s.value());
                assertEquals(held.size(), s.count());
            }
            // Same multiset in another order, and merged from two halves: bit-identical.
            Collections.shuffle(held, rnd);
            ExactSum a = new ExactSum();
            ExactSum b = new ExactSum();
            for (int k = 0; k < held.size(); k++) (k % 2 == 0 ? a : b).add(held.get(k));
            a.merge(b);
            assertBits(s.value(), a.value());
        }
    }

    /** Prefix states subtracted (through their bytes) = the sliding window's exact sum, bit for bit. */
    @Test
    void prefixDifferencesEqualTheWindowSum() {
        Random rnd = new Random(7);
        for (int round = 0; round < 50; round++) {
            double[] xs = new double[80];
            for (int k = 0; k < xs.length; k++) {
                xs[k] = rnd.nextInt(10) == 0 ? (rnd.nextBoolean() ? Double.POSITIVE_INFINITY : Double.NaN)
                        : randomDouble(rnd);
            }
            byte[][] prefix = new byte[xs.length + 1][];
            ExactSum running = new ExactSum();
            prefix[0] = running.toBytes();
            for (int k = 0; k < xs.length; k++) {
                running.add(xs[k]);
                prefix[k + 1] = running.toBytes();
            }
            for (int lo = 0; lo <= xs.length; lo += 1 + rnd.nextInt(9)) {
                for (int hi = lo; hi <= xs.length; hi += 1 + rnd.nextInt(9)) {
                    ExactSum window = new ExactSum();
                    for (int k = lo; k < hi; k++) window.add(xs[k]);
                    Double sum = SparkExactSumState.windowSum(prefix[hi], prefix[lo]);
                    Double mean = SparkExactSumState.windowMean(prefix[hi], prefix[lo]);
                    if (hi == lo) {  // no values (a window of nulls): no sum, no mean
                        assertEquals(null, sum);
                        assertEquals(null, mean);
                    } else {
                        assertBits(window.value(), sum);
                        assertBits(window.mean(), mean);
                    }
                }
            }
            assertBits(running.value(), SparkExactSumState.windowSum(prefix[xs.length], null));
        }
    }

    private static double randomDouble(Random rnd) {
        switch (rnd.nextInt(6)) {
            case 0: return (rnd.nextBoolean() ? 1 : -1) * MAX * rnd.nextDouble();  // near overflow
            case 1: return Double.longBitsToDouble(rnd.nextLong() & 0x000fffffffffffffL);  // subnormal
            case 2: return Math.scalb(rnd.nextDouble() - 0.5, rnd.nextInt(2098) - 1074);  // any scale
            case 3: return Math.rint(rnd.nextDouble() * 100) / 100;  // money-like
            case 4: return (rnd.nextBoolean() ? 1 : -1) * Math.scalb(1.0, rnd.nextInt(120) - 60);  // ties
            default: return (rnd.nextDouble() - 0.5) * 1e16;
        }
    }

    /** An exact dyadic BigDecimal (a sum of doubles) as an integer count of 2^-1074. */
    private static java.math.BigInteger toUnits(BigDecimal x) {
        return x.multiply(new BigDecimal(java.math.BigInteger.ONE.shiftLeft(1074))).toBigIntegerExact();
    }

    /** r is the double nearest to exact, ties to even; +-Infinity iff |exact| >= MAX + ulp(MAX)/2. */
    private static void assertCorrectlyRounded(BigDecimal exact, double r) {
        BigDecimal edge = new BigDecimal(MAX).add(new BigDecimal(Math.ulp(MAX) / 2));
        if (exact.abs().compareTo(edge) >= 0) {
            assertBits(exact.signum() > 0 ? Double.POSITIVE_INFINITY : Double.NEGATIVE_INFINITY, r);
            return;
        }
        assertTrue(Double.isFinite(r), () -> "finite sum " + exact + " gave " + r);
        if (exact.signum() == 0) {
            assertBits(0.0, r);
            return;
        }
        int cmp = exact.subtract(new BigDecimal(r)).abs().multiply(BigDecimal.valueOf(2))
                .compareTo(new BigDecimal(Math.ulp(r)));
        // Within half an ulp of r; at exactly half, r must be even (for a binade edge r's
        // ulp below is half as big, which the 1-ulp-of-r bound still covers loosely, so
        // compare against the neighbours too).
        assertTrue(cmp <= 0, () -> exact + " -> " + r + " is more than half an ulp off");
        double down = Math.nextDown(r);
        double up = Math.nextUp(r);
        BigDecimal err = exact.subtract(new BigDecimal(r)).abs();
        for (double n : new double[] {down, up}) {
            if (Double.isInfinite(n)) continue;
            int c = exact.subtract(new BigDecimal(n)).abs().compareTo(err);
            assertTrue(c > 0 || (c == 0 && (Double.doubleToRawLongBits(r) & 1) == 0),
                    () -> exact + " -> " + r + " but " + n + " is at least as near");
        }
    }
}
