package dev.tandem.udf;

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

/**
 * {@code 'connector' = 'tandem-online'}: the stream job's online sink, Tandem's feature rows into Redis in
 * Feast's layout, timestamp-guarded on the server (see {@link OnlineWriter}).
 *
 * <p>The table's options are written by {@code stream_jobs/online_udf.py} from Feast's own functions and
 * the catalog; nobody is expected to type them. Per view {@code N} (0, 1, ...): {@code view.N.name},
 * {@code view.N.key-column}, {@code view.N.key-prefix} (hex), {@code view.N.features}
 * ({@code column:murmur3 hex:INT64|DOUBLE}, comma-separated).
 */
public final class OnlineSinkFactory implements DynamicTableSinkFactory {
    static final ConfigOption<String> HOST = ConfigOptions.key("host").stringType().noDefaultValue();
    static final ConfigOption<Integer> PORT = ConfigOptions.key("port").intType().noDefaultValue();
    static final ConfigOption<Integer> DB = ConfigOptions.key("db").intType().defaultValue(0);
    static final ConfigOption<String> USER = ConfigOptions.key("user").stringType().noDefaultValue();
    static final ConfigOption<String> PASSWORD = ConfigOptions.key("password").stringType().noDefaultValue();
    static final ConfigOption<Boolean> SSL = ConfigOptions.key("ssl").booleanType().defaultValue(false);
    static final ConfigOption<String> SCRIPT = ConfigOptions.key("script").stringType().noDefaultValue();
    static final ConfigOption<String> SCRIPT_SHA = ConfigOptions.key("script-sha").stringType().noDefaultValue();
    static final ConfigOption<Long> TTL = ConfigOptions.key("ttl-seconds").longType().defaultValue(0L);
    static final ConfigOption<String> EVENT_TIME = ConfigOptions.key("event-time-column").stringType().noDefaultValue();
    static final ConfigOption<String> KEY_SUFFIX = ConfigOptions.key("key-suffix").stringType().noDefaultValue();
    static final ConfigOption<Integer> INT64_FIELD = ConfigOptions.key("int64-field").intType().noDefaultValue();
    static final ConfigOption<Integer> DOUBLE_FIELD = ConfigOptions.key("double-field").intType().noDefaultValue();
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
        return Set.of(HOST, PORT, SCRIPT, SCRIPT_SHA, EVENT_TIME, KEY_SUFFIX, INT64_FIELD, DOUBLE_FIELD, VIEWS);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return new HashSet<>(List.of(DB, USER, PASSWORD, SSL, TTL, BATCH, FLUSH_MS, MAX_TRIES, BACKOFF_MS,
                MAX_BACKOFF_MS, SOCKET_TIMEOUT_MS, CONNECT_TIMEOUT_MS));
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validateExcept("view.");
        ReadableConfig options = helper.getOptions();
        Map<String, String> raw = context.getCatalogTable().getOptions();
        ResolvedSchema schema = context.getCatalogTable().getResolvedSchema();
        List<String> columns = schema.getColumnNames();
        OnlineWriter.Settings s = new OnlineWriter.Settings();
        s.host = options.get(HOST);
        s.port = options.get(PORT);
        s.db = options.get(DB);
        s.user = options.getOptional(USER).orElse(null);
        s.password = options.getOptional(PASSWORD).orElse(null);
        s.ssl = options.get(SSL);
        s.script = options.get(SCRIPT);
        s.scriptSha = options.get(SCRIPT_SHA);
        s.ttlSeconds = options.get(TTL);
        s.eventTimeIndex = index(columns, options.get(EVENT_TIME));
        s.keySuffix = FeastBytes.hex(options.get(KEY_SUFFIX));
        s.int64Field = options.get(INT64_FIELD);
        s.doubleField = options.get(DOUBLE_FIELD);
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
            v.keyIndex = index(columns, require(raw, p + "key-column"));
            v.keyPrefix = FeastBytes.hex(require(raw, p + "key-prefix"));
            v.tsField = ("_ts:" + v.name).getBytes(java.nio.charset.StandardCharsets.UTF_8);
            String[] features = require(raw, p + "features").split(",");
            v.featureIndex = new int[features.length];
            v.fieldName = new byte[features.length][];
            v.isInt64 = new boolean[features.length];
            for (int i = 0; i < features.length; i++) {
                String[] parts = features[i].split(":");
                if (parts.length != 3 || !(parts[2].equals("INT64") || parts[2].equals("DOUBLE"))) {
                    throw new ValidationException("tandem-online: " + p + "features: bad entry " + features[i]);
                }
                v.featureIndex[i] = index(columns, parts[0]);
                v.fieldName[i] = FeastBytes.hex(parts[1]);
                v.isInt64[i] = parts[2].equals("INT64");
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

    private static int index(List<String> columns, String name) {
        int i = columns.indexOf(name);
        if (i < 0) {
            throw new ValidationException("tandem-online: the table has no column " + name);
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
