package dev.tandem.udf;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * What one feature group's window operator computes: its features, resolved against the columns
 * of the rows it receives. Engine-free; {@link KeyWindows} runs it, {@link FlinkWindowFeatures}
 * feeds it.
 *
 * <p>The spec text is written by {@code stream_jobs/compile_catalog.py} from the catalog:
 * {@code order=<tie-break column>;<feature>=<agg>/<window ms>[/<column>];...}, e.g.
 * {@code order=transaction_id;user_txn_count_1h=count/3600000;user_amount_max_24h=max/86400000/amount}.
 * The aggregations and their rules are {@code transforms/aggregations.py}'s.
 */
public final class WindowSpec implements Serializable {
    private static final long serialVersionUID = 1L;

    public enum Agg { COUNT, SUM, MEAN, MIN, MAX, DISTINCT_COUNT, LAST }

    /** The value types a window keeps: BIGINT, DOUBLE, STRING and BOOLEAN columns. */
    public enum Kind { LONG, DOUBLE, STRING, BOOLEAN }

    /** One feature: {@code agg} of kept column {@code column} (-1 for count) over window {@code window}. */
    public static final class Feature implements Serializable {
        private static final long serialVersionUID = 1L;
        public final String name;
        public final Agg agg;
        public final int window;  // index into windowsMs
        public final int column;  // index into the kept columns, -1 for count
        public final Kind result;

        Feature(String name, Agg agg, int window, int column, Kind result) {
            this.name = name;
            this.agg = agg;
            this.window = window;
            this.column = column;
            this.result = result;
        }
    }

    public final List<Feature> features;
    /** Distinct window lengths, ascending; the last is the widest. */
    public final long[] windowsMs;
    /** For each kept column: its position in the rows the operator receives, and its kind. */
    public final int[] columnPositions;
    public final Kind[] columnKinds;
    /** Position and kind of the column that orders peers (rows with equal event times). */
    public final int orderPosition;
    public final Kind orderKind;

    private WindowSpec(List<Feature> features, long[] windowsMs, int[] columnPositions, Kind[] columnKinds,
                       int orderPosition, Kind orderKind) {
        this.features = features;
        this.windowsMs = windowsMs;
        this.columnPositions = columnPositions;
        this.columnKinds = columnKinds;
        this.orderPosition = orderPosition;
        this.orderKind = orderKind;
    }

    /**
     * Parses {@code text} against the row layout the operator receives ({@code names[i]} of kind
     * {@code kinds[i]}, null for a column of another type). Throws {@link IllegalArgumentException}
     * naming the part at fault.
     */
    public static WindowSpec parse(String text, List<String> names, List<Kind> kinds) {
        String order = null;
        Map<String, String[]> raw = new LinkedHashMap<>();
        for (String part : text.split(";")) {
            int eq = part.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("window spec: '" + part + "' is not name=value");
            String name = part.substring(0, eq);
            String value = part.substring(eq + 1);
            if (name.equals("order")) order = value;
            else if (raw.put(name, value.split("/")) != null) {
                throw new IllegalArgumentException("window spec: feature " + name + " is defined twice");
            }
        }
        if (order == null) throw new IllegalArgumentException("window spec: no order=<column>");
        if (raw.isEmpty()) throw new IllegalArgumentException("window spec: no features");
        int orderPosition = position(order, names, kinds, "order");

        TreeSet<Long> lengths = new TreeSet<>();
        for (Map.Entry<String, String[]> e : raw.entrySet()) {
            String[] p = e.getValue();
            if (p.length < 2) throw new IllegalArgumentException("window spec: feature " + e.getKey() + " needs agg/window");
            lengths.add(parseWindow(e.getKey(), p[1]));
        }
        long[] windowsMs = lengths.stream().mapToLong(Long::longValue).toArray();

        List<Integer> kept = new ArrayList<>();
        List<Feature> features = new ArrayList<>();
        for (Map.Entry<String, String[]> e : raw.entrySet()) {
            String name = e.getKey();
            String[] p = e.getValue();
            Agg agg;
            try {
                agg = Agg.valueOf(p[0].toUpperCase());
            } catch (IllegalArgumentException ex) {
                throw new IllegalArgumentException("window spec: feature " + name + ": unknown aggregation " + p[0]);
            }
            int window = java.util.Arrays.binarySearch(windowsMs, parseWindow(name, p[1]));
            if ((agg == Agg.COUNT) != (p.length == 2) || p.length > 3) {
                throw new IllegalArgumentException("window spec: feature " + name + ": " + p[0]
                        + (agg == Agg.COUNT ? " takes no column" : " needs one column"));
            }
            if (agg == Agg.COUNT) {
                features.add(new Feature(name, agg, window, -1, Kind.LONG));
                continue;
            }
            int pos = position(p[2], names, kinds, "feature " + name);
            Kind kind = kinds.get(pos);
            boolean numeric = kind == Kind.LONG || kind == Kind.DOUBLE;
            if ((agg == Agg.SUM || agg == Agg.MEAN) && !numeric
                    || (agg == Agg.MIN || agg == Agg.MAX) && kind == Kind.BOOLEAN) {
                throw new IllegalArgumentException("window spec: feature " + name + ": " + p[0] + " of a " + kind + " column");
            }
            if (!kept.contains(pos)) kept.add(pos);
            Kind result = switch (agg) {
                case DISTINCT_COUNT -> Kind.LONG;
                case MEAN -> Kind.DOUBLE;
                default -> kind;
            };
            features.add(new Feature(name, agg, window, kept.indexOf(pos), result));
        }
        int[] positions = kept.stream().mapToInt(Integer::intValue).toArray();
        Kind[] columnKinds = kept.stream().map(kinds::get).toArray(Kind[]::new);
        return new WindowSpec(List.copyOf(features), windowsMs, positions, columnKinds, orderPosition,
                kinds.get(orderPosition));
    }

    private static long parseWindow(String feature, String text) {
        long ms;
        try {
            ms = Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("window spec: feature " + feature + ": window '" + text + "' is not ms");
        }
        if (ms <= 0) throw new IllegalArgumentException("window spec: feature " + feature + ": window must be positive");
        return ms;
    }

    private static int position(String column, List<String> names, List<Kind> kinds, String what) {
        int pos = names.indexOf(column);
        if (pos < 0) throw new IllegalArgumentException("window spec: " + what + ": no column " + column + " in " + names);
        if (kinds.get(pos) == null) {
            throw new IllegalArgumentException("window spec: " + what + ": column " + column
                    + " is not BIGINT, DOUBLE, STRING or BOOLEAN");
        }
        return pos;
    }

    /**
     * Orders values of one kind: numbers numerically, strings by code point (Python's and UTF-8's
     * order), false before true.
     */
    public static Comparator<Object> order(Kind kind) {
        return switch (kind) {
            case LONG -> (a, b) -> Long.compare((Long) a, (Long) b);
            case DOUBLE -> (a, b) -> Double.compare((Double) a, (Double) b);
            case STRING -> (a, b) -> compareCodePoints((String) a, (String) b);
            case BOOLEAN -> (a, b) -> Boolean.compare((Boolean) a, (Boolean) b);
        };
    }

    /** {@code a} before {@code b} in code point order (Java's compareTo orders UTF-16 units instead). */
    public static int compareCodePoints(String a, String b) {
        int i = 0, j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i), cb = b.codePointAt(j);
            if (ca != cb) return Integer.compare(ca, cb);
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }
}
