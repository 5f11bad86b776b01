package dev.tandem.udf;

import java.io.Serializable;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Exact, order-independent sum of doubles with exact removal: the engine-free
 * accumulator behind Tandem's {@code exact_sum}/{@code exact_mean} in Spark
 * and Flink.
 *
 * <p>{@link #value()} is the correctly rounded (half-even) exact sum of the
 * values currently held, i.e. Python's {@code math.fsum} and
 * {@code transforms.numbers.exact_sum}: {@code +-Infinity} when the exact sum
 * overflows a double, {@code 0.0} (never {@code -0.0}) when it is zero or
 * empty. Because the state represents the sum exactly, the result does not
 * depend on the order of {@link #add}, {@link #remove} and {@link #merge};
 * removing {@code x} is adding {@code -x}, exactly, which is what Flink's
 * retracting OVER windows need (a running double sum there drifts: it went
 * negative on positive amounts, tests/test_exact_sum.py).
 *
 * <p>State: Shewchuk's non-overlapping partials (CPython's {@code math_fsum}
 * algorithm), usually 1-3 doubles, so an add costs a few flops per partial.
 * A two-sum step whose high word overflows cannot be held in doubles; its
 * exact value goes to {@link #overflow}, an integer count of 2^-1074 (every
 * double is an integer multiple of it). Whenever {@code overflow} is non-zero
 * the whole state is re-canonicalised through {@code BigInteger}, which is
 * slow but only happens while sums brush the edge of the double range.
 * Infinities and NaNs are counted rather than summed so they can be removed.
 */
public final class ExactSum implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Non-overlapping partials in increasing magnitude, none zero; {@code partials[0..size)} are live. */
    private double[] partials = new double[4];
    private int size;
    /** Exact value outside the partials, in units of 2^-1074; zero except near overflow. */
    private BigInteger overflow = BigInteger.ZERO;
    private long count;
    private long posInf;
    private long negInf;
    private long nan;

    public ExactSum() {}

    /** Adds {@code x} (any double, including infinities and NaN). */
    public void add(double x) {
        count++;
        if (Double.isNaN(x)) nan++;
        else if (x == Double.POSITIVE_INFINITY) posInf++;
        else if (x == Double.NEGATIVE_INFINITY) negInf++;
        else addFinite(x);
    }

    /** Removes one earlier-added {@code x}: exactly undoes {@link #add}. */
    public void remove(double x) {
        count--;
        if (Double.isNaN(x)) nan--;
        else if (x == Double.POSITIVE_INFINITY) posInf--;
        else if (x == Double.NEGATIVE_INFINITY) negInf--;
        else addFinite(-x);  // negation is exact
    }

    /** Adds everything {@code other} holds (other is unchanged). */
    public void merge(ExactSum other) {
        if (other == this) {
            other = new ExactSum();
            other.merge(this);
        }
        for (int k = 0; k < other.size; k++) addFinite(other.partials[k]);
        if (other.overflow.signum() != 0) {
            overflow = overflow.add(other.overflow);
            canonicalise();
        }
        count += other.count;
        posInf += other.posInf;
        negInf += other.negInf;
        nan += other.nan;
    }

    /**
     * Removes everything {@code other} holds (other is unchanged): exactly undoes
     * {@link #merge}. With prefix sums this is how a sliding window's sum is
     * taken in O(1): (all values up to t) minus (all values before t - W).
     */
    public void subtract(ExactSum other) {
        if (other == this) {
            clear();
            return;
        }
        for (int k = 0; k < other.size; k++) addFinite(-other.partials[k]);  // negation is exact
        if (other.overflow.signum() != 0) {
            overflow = overflow.subtract(other.overflow);
            canonicalise();
        }
        count -= other.count;
        posInf -= other.posInf;
        negInf -= other.negInf;
        nan -= other.nan;
    }

    /**
     * The whole state as compact bytes (counts, partials, overflow), for engines
     * that carry a sum from row to row as a binary column; {@link #fromBytes}
     * reads it back exactly.
     */
    public byte[] toBytes() {
        byte[] big = overflow.signum() == 0 ? new byte[0] : overflow.toByteArray();
        ByteBuffer out = ByteBuffer.allocate(4 * Long.BYTES + 2 * Integer.BYTES + size * Double.BYTES + big.length);
        out.putLong(count).putLong(posInf).putLong(negInf).putLong(nan).putInt(size);
        for (int k = 0; k < size; k++) out.putDouble(partials[k]);
        out.putInt(big.length).put(big);
        return out.array();
    }

    /** The state {@link #toBytes} wrote. */
    public static ExactSum fromBytes(byte[] bytes) {
        ByteBuffer in = ByteBuffer.wrap(bytes);
        ExactSum s = new ExactSum();
        s.count = in.getLong();
        s.posInf = in.getLong();
        s.negInf = in.getLong();
        s.nan = in.getLong();
        s.size = in.getInt();
        if (s.size > s.partials.length) s.partials = new double[s.size];
        for (int k = 0; k < s.size; k++) s.partials[k] = in.getDouble();
        byte[] big = new byte[in.getInt()];
        in.get(big);
        if (big.length > 0) s.overflow = new BigInteger(big);
        return s;
    }

    /** Back to the empty sum. */
    public void clear() {
        size = 0;
        overflow = BigInteger.ZERO;
        count = posInf = negInf = nan = 0;
    }

    /** Number of values held (adds minus removes). */
    public long count() {
        return count;
    }

    /** The correctly rounded exact sum; NaN when it holds a NaN or both infinities. */
    public double value() {
        if (nan > 0 || (posInf > 0 && negInf > 0)) return Double.NaN;
        if (posInf > 0) return Double.POSITIVE_INFINITY;
        if (negInf > 0) return Double.NEGATIVE_INFINITY;
        if (overflow.signum() != 0) return toDouble(overflow);  // canonical: partials are empty
        double r = roundPartials();
        // Partials summing past the range in doubles may still hold a finite exact sum
        // (e.g. MAX + ulp(MAX)/2 - tiny): only the exact integer can tell.
        return Double.isInfinite(r) ? toDouble(exactUnits()) : r;
    }

    /** The exact sum divided by the count (docs/semantics.md's mean); NaN when empty. */
    public double mean() {
        return value() / count;
    }

    /** Grow-expansion step of CPython's math_fsum: partials += x, exactly. */
    private void addFinite(double x) {
        double[] p = partials;
        int i = 0;
        int j = 0;
        for (; j < size; j++) {
            double y = p[j];
            if (Math.abs(x) < Math.abs(y)) {
                double t = x;
                x = y;
                y = t;
            }
            double hi = x + y;
            if (Double.isInfinite(hi)) {
                // x + y is finite only as a real number: park it exactly, keep the rest.
                overflow = overflow.add(units(x)).add(units(y));
                x = 0.0;
                for (j++; j < size; j++) p[i++] = p[j];
                break;
            }
            double lo = y - (hi - x);
            if (lo != 0.0) p[i++] = lo;
            x = hi;
        }
        size = i;
        if (x != 0.0) {
            if (size == p.length) partials = p = Arrays.copyOf(p, 2 * size);
            p[size++] = x;
        }
        if (overflow.signum() != 0) canonicalise();
    }

    /**
     * CPython's final step: add the partials from the top until the sum turns
     * inexact, then fix a half-way case that the partials below would break
     * (so {@code fsum([1e-16, 1, 1e16])} rounds up).
     */
    private double roundPartials() {
        double[] p = partials;
        int n = size;
        if (n == 0) return 0.0;
        double hi = p[--n];
        double lo = 0.0;
        while (n > 0) {
            double x = hi;
            double y = p[--n];
            hi = x + y;
            double yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        if (n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0))) {
            double y = lo * 2.0;
            double x = hi + y;
            double yr = x - hi;
            if (y == yr) hi = x;
        }
        return hi;
    }

    /**
     * Folds partials and overflow into one exact integer and, when that rounds
     * to a finite double, re-expands it as fresh non-overlapping partials
     * (rounded head, then the exact remainders); otherwise keeps it all in
     * {@code overflow}.
     */
    private void canonicalise() {
        BigInteger total = exactUnits();
        size = 0;
        overflow = BigInteger.ZERO;
        if (Double.isInfinite(toDouble(total))) {
            overflow = total;
            return;
        }
        double[] desc = new double[4];
        int n = 0;
        while (total.signum() != 0) {
            double d = toDouble(total);
            if (n == desc.length) desc = Arrays.copyOf(desc, 2 * n);
            desc[n++] = d;
            total = total.subtract(units(d));
        }
        if (partials.length < n) partials = new double[n];
        for (int k = 0; k < n; k++) partials[k] = desc[n - 1 - k];
        size = n;
    }

    /** The exact finite sum (partials plus overflow) in units of 2^-1074. */
    private BigInteger exactUnits() {
        BigInteger total = overflow;
        for (int k = 0; k < size; k++) total = total.add(units(partials[k]));
        return total;
    }

    /** A finite double as an exact integer number of 2^-1074. */
    static BigInteger units(double x) {
        long bits = Double.doubleToRawLongBits(x);
        int exp = (int) ((bits >>> 52) & 0x7ff);
        long mant = bits & ((1L << 52) - 1);
        BigInteger u = exp == 0 ? BigInteger.valueOf(mant)  // subnormal or zero
                : BigInteger.valueOf(mant | (1L << 52)).shiftLeft(exp - 1);
        return bits < 0 ? u.negate() : u;
    }

    /** {@code n * 2^-1074} rounded half-even to a double; +-Infinity past the range. */
    static double toDouble(BigInteger n) {
        int sign = n.signum();
        if (sign == 0) return 0.0;
        BigInteger a = n.abs();
        int shift = a.bitLength() - 53;
        if (shift <= 0) return sign * Math.scalb((double) a.longValueExact(), -1074);  // exact
        long m = a.shiftRight(shift).longValueExact();  // top 53 bits
        BigInteger rest = a.subtract(BigInteger.valueOf(m).shiftLeft(shift));
        int cmp = rest.compareTo(BigInteger.ONE.shiftLeft(shift - 1));
        if (cmp > 0 || (cmp == 0 && (m & 1) == 1)) m++;  // m may become 2^53: still exact
        return sign * Math.scalb((double) m, shift - 1074);  // Infinity when too large
    }
}
