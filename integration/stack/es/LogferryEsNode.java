// Starts one real Elasticsearch node in this JVM, without the distribution's CLI/bootstrap.
//
// Why: the official distribution is not on Maven Central, but the server jar and the
// transport-netty4 module (the HTTP + transport layer) are. elasticsearch.py lays them out
// like a distribution (lib/ on the module path, modules/transport-netty4/ with its
// plugin-descriptor.properties) and runs this class; the node then loads the module the
// same way a packaged Elasticsearch does (its own module layer).
//
// Usage: java --module-path LIB --add-modules ALL-MODULE-PATH -cp CLASSES LogferryEsNode
//             logferry.config_dir=DIR path.home=... path.data=... node.name=... [other.es=setting ...]
// Blocks until SIGTERM/SIGINT, then closes the node cleanly (flushes shards) and exits.
// What is skipped compared with bin/elasticsearch: keystore, security manager/entitlements,
// bootstrap checks (we bind to loopback only, so they would not apply anyway), x-pack.

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

public final class LogferryEsNode {
    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder();
        Path configDir = null;
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got: " + arg);
            }
            String key = arg.substring(0, eq);
            if (key.equals("logferry.config_dir")) { // ours, not an ES setting
                configDir = Path.of(arg.substring(eq + 1)).toAbsolutePath();
            } else {
                builder.put(key, arg.substring(eq + 1));
            }
        }
        if (configDir == null) {
            throw new IllegalArgumentException("logferry.config_dir=DIR is required");
        }
        Settings settings = builder.build();
        String nodeName = settings.get("node.name", "node");

        // path.home holds lib/ and modules/, the config dir log4j2.properties: both shared and
        // read-only; path.data and path.logs are the node's own.
        LogConfigurator.registerErrorListener();
        LogConfigurator.configureESLogging(); // ES's logging SPI, needed before any ES class logs
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), configDir, () -> nodeName);
        // Log lines go to stdout (console appender of log4j2.properties); the caller redirects
        // them to the node's log file.
        LogConfigurator.setNodeName(nodeName);
        try { // ES 8 puts the cluster name in log lines; ES 9 dropped the method (so: by reflection)
            LogConfigurator.class.getMethod("setClusterName", String.class)
                .invoke(null, env.settings().get("cluster.name", "elasticsearch"));
        } catch (NoSuchMethodException e) {
            // Elasticsearch 9
        }
        LogConfigurator.configure(env, true);

        PluginsLoader plugins = PluginsLoader.createPluginsLoader(
            PluginsLoader.loadModulesBundles(env.modulesDir()),
            PluginsLoader.loadPluginsBundles(env.pluginsDir()),
            Map.of()
        );
        Node node = new Node(env, plugins);

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "logferry-es-shutdown"));

        node.start();
        System.out.println("LOGFERRY-ES-STARTED " + nodeName);
        closed.await(); // node threads are daemons: keep the JVM alive until shutdown
    }
}
