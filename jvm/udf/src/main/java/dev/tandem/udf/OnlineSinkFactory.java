package dev.tandem.udf;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.ResolvedSchema;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * {@code 'connector' = 'tandem-online'}: the stream job's online sink, Tandem's feature rows into Redis in
 * Feast's layout, timestamp-guarded on the server (see {@link OnlineWriter}).
 *
 * <p>The table's options are written by {@code stream_jobs/online_table.py} from Feast's own functions and
 * the catalog; nobody is expected to type them. {@code value-fields}: {@code KIND:field number} of
 * {@code feast.types.Value}, comma-separated, for every {@link OnlineWriter.Kind}. Per view {@code N}
 * (0, 1, ...): {@code view.N.name}; {@code view.N.key-parts}, the key columns in Feast's order as
 * {@code column:STRING|INT64:head hex}; {@code view.N.key-tail} (hex); {@code view.N.features}
 * ({@code column:murmur3 hex:KIND}), each comma-separated.
 */
public final class OnlineSinkFactory implements DynamicTableSinkFactory {
    /** The SQL type the sink reads for each kind (STRING is VARCHAR). */
    private static final Map<OnlineWriter.Kind, LogicalTypeRoot> ROOTS = Map.of(
            OnlineWriter.Kind.STRING, LogicalTypeRoot.VARCHAR, OnlineWriter.Kind.INT64, LogicalTypeRoot.BIGINT,
            OnlineWriter.Kind.DOUBLE, LogicalTypeRoot.DOUBLE, OnlineWriter.Kind.BOOL, LogicalTypeRoot.BOOLEAN);

    static final ConfigOption<String> HOST = ConfigOptions.key("host").stringType().noDefaultValue();
    static final ConfigOption<Integer> PORT = ConfigOptions.key("port").intType().noDefaultValue();
    static final ConfigOption<Integer> DB = ConfigOptions.key("db").intType().defaultValue(0);
    static final ConfigOption<String> USER = ConfigOptions.key("user").stringType().noDefaultValue();
    static final ConfigOption<String> PASSWORD = ConfigOptions.key("password").stringType().noDefaultValue();
    static final ConfigOption<Boolean> SSL = ConfigOptions.key("ssl").booleanType().defaultValue(false);
    /** PEM certificates of the CAs to trust (else the JVM's own); the text, so any TaskManager has it. */
    static final ConfigOption<String> SSL_CA_PEM = ConfigOptions.key("ssl-ca-pem").stringType().noDefaultValue();
    static final ConfigOption<Boolean> SSL_CHECK_HOSTNAME =
            ConfigOptions.key("ssl-check-hostname").booleanType().defaultValue(false);
    static final ConfigOption<String> SCRIPT = ConfigOptions.key("script").stringType().noDefaultValue();
    static final ConfigOption<String> SCRIPT_SHA = ConfigOptions.key("script-sha").stringType().noDefaultValue();
    static final ConfigOption<Long> TTL = ConfigOptions.key("ttl-seconds").longType().defaultValue(0L);
    static final ConfigOption<String> EVENT_TIME = ConfigOptions.key("event-time-column").stringType().noDefaultValue();
    static final ConfigOption<String> VALUE_FIELDS = ConfigOptions.key("value-fields").stringType().noDefaultValue();
    static final ConfigOption<Integer> VIEWS = ConfigOptions.key("views").intType().noDefaultValue();
    static final ConfigOption<Integer> BATCH = ConfigOptions.key("batch-size").intType().defaultValue(500);
    static final ConfigOption<Long> FLUSH_MS = ConfigOptions.key("flush-interval-ms").longType().defaultValue(20L);
    static final ConfigOption<Integer> MAX_TRIES = ConfigOptions.key("max-tries").intType().defaultValue(5);
    static final ConfigOption<Long> BACKOFF_MS = ConfigOptions.key("backoff-ms").longType().defaultValue(500L);
    static final ConfigOption<Long> MAX_BACKOFF_MS =
            ConfigOptions.key("max-backoff-ms").longType().defaultValue(5000L);
    static final ConfigOption<Integer> SOCKET_TIMEOUT_MS =
            ConfigOptions.key("socket-timeout-ms").intType().defaultValue(5000);
    static final ConfigOption<Integer> CONNECT_TIMEOUT_MS =
            ConfigOptions.key("connect-timeout-ms").intType().defaultValue(2000);

    @Override
    public String factoryIdentifier() {
        return "tandem-online";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(HOST, PORT, SCRIPT, SCRIPT_SHA, EVENT_TIME, VALUE_FIELDS, VIEWS);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return new HashSet<>(List.of(DB, USER, PASSWORD, SSL, SSL_CA_PEM, SSL_CHECK_HOSTNAME, TTL, BATCH, FLUSH_MS,
                MAX_TRIES, BACKOFF_MS,
                MAX_BACKOFF_MS, SOCKET_TIMEOUT_MS, CONNECT_TIMEOUT_MS));
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validateExcept("view.");
        ReadableConfig options = helper.getOptions();
        Map<String, String> raw = context.getCatalogTable().getOptions();
        ResolvedSchema schema = context.getCatalogTable().getResolvedSchema();
        OnlineWriter.Settings s = new OnlineWriter.Settings();
        s.host = options.get(HOST);
        s.port = options.get(PORT);
        s.db = options.get(DB);
        s.user = options.getOptional(USER).orElse(null);
        s.password = options.getOptional(PASSWORD).orElse(null);
        s.ssl = options.get(SSL);
        s.sslCaPem = options.getOptional(SSL_CA_PEM).orElse(null);
        s.sslCheckHostname = options.get(SSL_CHECK_HOSTNAME);
        s.script = options.get(SCRIPT);
        s.scriptSha = options.get(SCRIPT_SHA);
        s.ttlSeconds = options.get(TTL);
        s.eventTimeIndex = index(schema, options.get(EVENT_TIME), LogicalTypeRoot.BIGINT);
        s.valueField = valueFields(options.get(VALUE_FIELDS));
        s.batchSize = options.get(BATCH);
        s.flushIntervalMs = options.get(FLUSH_MS);
        s.maxTries = options.get(MAX_TRIES);
        s.backoffMs = options.get(BACKOFF_MS);
        s.maxBackoffMs = options.get(MAX_BACKOFF_MS);
        s.socketTimeoutMs = options.get(SOCKET_TIMEOUT_MS);
        s.connectTimeoutMs = options.get(CONNECT_TIMEOUT_MS);
        if (s.batchSize < 1 || s.maxTries < 1 || s.flushIntervalMs < 1) {
            throw new ValidationException("tandem-online: batch-size, max-tries and flush-interval-ms must be >= 1");
        }
        List<OnlineWriter.View> views = new ArrayList<>();
        for (int n = 0; n < options.get(VIEWS); n++) {
            String p = "view." + n + ".";
            OnlineWriter.View v = new OnlineWriter.View();
            v.name = require(raw, p + "name");
            v.tsField = ("_ts:" + v.name).getBytes(StandardCharsets.UTF_8);
            String[][] parts = entries(raw, p + "key-parts");
            v.keyColumn = new String[parts.length];
            v.keyIndex = new int[parts.length];
            v.keyKind = new OnlineWriter.Kind[parts.length];
            v.keyHead = new byte[parts.length][];
            for (int i = 0; i < parts.length; i++) {
                v.keyColumn[i] = parts[i][0];
                v.keyKind[i] = kind(parts[i][1], p + "key-parts");
                if (v.keyKind[i] != OnlineWriter.Kind.STRING && v.keyKind[i] != OnlineWriter.Kind.INT64) {
                    throw new ValidationException("tandem-online: " + p + "key-parts: a key is STRING or INT64, not "
                            + parts[i][1]);
                }
                v.keyIndex[i] = index(schema, parts[i][0], ROOTS.get(v.keyKind[i]));
                v.keyHead[i] = FeastBytes.hex(parts[i][2]);
            }
            v.keyTail = FeastBytes.hex(require(raw, p + "key-tail"));
            String[][] features = entries(raw, p + "features");
            v.featureIndex = new int[features.length];
            v.fieldName = new byte[features.length][];
            v.kind = new OnlineWriter.Kind[features.length];
            for (int i = 0; i < features.length; i++) {
                v.kind[i] = kind(features[i][2], p + "features");
                v.featureIndex[i] = index(schema, features[i][0], ROOTS.get(v.kind[i]));
                v.fieldName[i] = FeastBytes.hex(features[i][1]);
            }
            views.add(v);
        }
        s.views = views.toArray(new OnlineWriter.View[0]);
        return new TableSink(s);
    }

    private static String require(Map<String, String> raw, String key) {
        String v = raw.get(key);
        if (v == null) {
            throw new ValidationException("tandem-online: missing option " + key);
        }
        return v;
    }

    /** A comma-separated option of {@code a:b:c} entries. */
    private static String[][] entries(Map<String, String> raw, String key) {
        String[] items = require(raw, key).split(",");
        String[][] out = new String[items.length][];
        for (int i = 0; i < items.length; i++) {
            out[i] = items[i].split(":");
            if (out[i].length != 3) {
                throw new ValidationException("tandem-online: " + key + ": bad entry " + items[i]);
            }
        }
        return out;
    }

    private static OnlineWriter.Kind kind(String name, String option) {
        try {
            return OnlineWriter.Kind.valueOf(name);
        } catch (IllegalArgumentException e) {
            throw new ValidationException("tandem-online: " + option + ": unknown value type " + name);
        }
    }

    /** {@code value-fields}: every kind's field number. */
    private static int[] valueFields(String option) {
        int[] out = new int[OnlineWriter.Kind.values().length];
        for (String item : option.split(",")) {
            String[] kv = item.split(":");
            if (kv.length != 2 || !kv[1].matches("[1-9][0-9]{0,8}")) {
                throw new ValidationException("tandem-online: value-fields: bad entry " + item);
            }
            out[kind(kv[0], "value-fields").ordinal()] = Integer.parseInt(kv[1]);
        }
        for (OnlineWriter.Kind k : OnlineWriter.Kind.values()) {
            if (out[k.ordinal()] == 0) {
                throw new ValidationException("tandem-online: value-fields has no field number for " + k);
            }
        }
        return out;
    }

    /** The column's index; the table must have it, of the type the sink reads. */
    private static int index(ResolvedSchema schema, String name, LogicalTypeRoot type) {
        int i = schema.getColumnNames().indexOf(name);
        if (i < 0) {
            throw new ValidationException("tandem-online: the table has no column " + name);
        }
        LogicalTypeRoot got = schema.getColumnDataTypes().get(i).getLogicalType().getTypeRoot();
        if (got != type) {
            throw new ValidationException("tandem-online: column " + name + " is " + got + ", the sink reads " + type);
        }
        return i;
    }

    static final class TableSink implements DynamicTableSink {
        private final OnlineWriter.Settings settings;

        TableSink(OnlineWriter.Settings settings) {
            this.settings = settings;
        }

        @Override
        public ChangelogMode getChangelogMode(ChangelogMode requested) {
            return ChangelogMode.insertOnly();
        }

        @Override
        public SinkRuntimeProvider getSinkRuntimeProvider(Context context) {
            return SinkV2Provider.of(new OnlineSink(settings));
        }

        @Override
        public DynamicTableSink copy() {
            return new TableSink(settings);
        }

        @Override
        public String asSummaryString() {
            return "tandem-online";
        }
    }

    static final class OnlineSink implements Sink<RowData> {
        private static final long serialVersionUID = 1L;
        private final OnlineWriter.Settings settings;

        OnlineSink(OnlineWriter.Settings settings) {
            this.settings = settings;
        }

        @Override
        public SinkWriter<RowData> createWriter(WriterInitContext context) {
            return new OnlineWriter(settings, context.getProcessingTimeService(), context.metricGroup());
        }
    }
}
