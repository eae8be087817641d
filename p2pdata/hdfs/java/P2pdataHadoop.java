// A real Hadoop 3 for tests and demos, started by p2pdata/hdfs/localcluster.py.
//
//   P2pdataHadoop hdfs KEY=VALUE...   NameNode + DataNodes (four storage tiers each) in one JVM
//   P2pdataHadoop yarn KEY=VALUE...   ResourceManager (writes yarn-site.xml for clients)
//   P2pdataHadoop nodemanager KEY=VALUE...  a NodeManager of that ResourceManager
//   P2pdataHadoop kerberos-namenode   a NameNode RPC endpoint that accepts Kerberos only
//                                     (no KDC: for testing clients that cannot authenticate)
//
// Every port is 0 unless a key names it (a restart passes the ports it printed, so clients
// keep their addresses). Each mode prints one line "P2PDATA_READY key=value ..." once it
// serves, then reads commands from stdin (one a line, each answered by "P2PDATA_OK ..." or
// "P2PDATA_ERR ..."); end of input halts the JVM, so it dies with its Python owner.
//
// hdfs keys: base (directory), datanodes (count), tiers (storage types of each DataNode), permissions, https, ec (comma-separated
//   erasure coding policies to enable), cachepool (created if given), sps (run the storage
//   policy satisfier), nn_rpc, nn_http, nn_https, dnI_xfer, dnI_ipc, dnI_http, dnI_https.
//   Commands: "stop-datanode I", "start-datanode I [KEY=VALUE...]" (same directories and
//   ports; the settings are for that start only, e.g. dfs.datanode.du.reserved).
// yarn keys: base, conf (the client configuration folder to write yarn-site.xml into),
//   fs (fs.defaultFS), gpus (yarn.io/gpu count on the NodeManager), memory_mb, vcores.

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.DFSUtil;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.protocol.CachePoolInfo;
import org.apache.hadoop.hdfs.protocol.HdfsConstants.StoragePolicySatisfierMode;
import org.apache.hadoop.hdfs.protocol.proto.ClientNamenodeProtocolProtos.ClientNamenodeProtocol;
import org.apache.hadoop.hdfs.protocolPB.ClientNamenodeProtocolPB;
import org.apache.hadoop.hdfs.protocolPB.ClientNamenodeProtocolServerSideTranslatorPB;
import org.apache.hadoop.ipc.ProtobufRpcEngine2;
import org.apache.hadoop.ipc.RPC;
import org.apache.hadoop.hdfs.server.balancer.NameNodeConnector;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.hdfs.server.namenode.sps.StoragePolicySatisfier;
import org.apache.hadoop.hdfs.server.sps.ExternalSPSContext;
import org.apache.hadoop.io.nativeio.NativeIO;
import org.apache.hadoop.metrics2.lib.DefaultMetricsSystem;
import org.apache.hadoop.util.VersionInfo;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.nodemanager.NodeManager;
import org.apache.hadoop.yarn.server.resourcemanager.ResourceManager;
import org.apache.hadoop.yarn.util.resource.ResourceUtils;

public class P2pdataHadoop {
    static final String HOST = "127.0.0.1";
    static final PrintStream OUT = System.out;
    static final String SPS_ID = "/system/sps.id";

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new LinkedHashMap<>();
        for (String arg : Arrays.copyOfRange(args, 1, args.length)) {
            int eq = arg.indexOf('=');
            opts.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        // Without this the daemons' metrics clash with each other in one JVM.
        DefaultMetricsSystem.setMiniClusterMode(true);
        try {
            if (args[0].equals("hdfs")) {
                new Hdfs(opts).run();
            } else if (args[0].equals("yarn")) {
                new Yarn(opts).run();
            } else if (args[0].equals("nodemanager")) {
                new Yarn(opts).runNodeManager();
            } else if (args[0].equals("kerberos-namenode")) {
                kerberosNameNode();
            } else {
                throw new IllegalArgumentException("mode must be hdfs or yarn: " + args[0]);
            }
        } catch (Throwable e) {
            // The daemons' threads would keep a failed start alive: end it now.
            e.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
    }

    /** The NameNode's client protocol on a server that demands Kerberos, as a secure
     * cluster's does: clients without a ticket are refused during the connection's SASL
     * exchange, before any call reaches the (absent) namesystem. Needs
     * -Djava.security.krb5.realm and -Djava.security.krb5.kdc; no KDC is ever asked. */
    static void kerberosNameNode() throws Exception {
        Configuration conf = new HdfsConfiguration();
        conf.set("hadoop.security.authentication", "kerberos");
        org.apache.hadoop.security.UserGroupInformation.setConfiguration(conf);
        RPC.setProtocolEngine(conf, ClientNamenodeProtocolPB.class, ProtobufRpcEngine2.class);
        RPC.Server server = new RPC.Builder(conf).setProtocol(ClientNamenodeProtocolPB.class)
            .setInstance(ClientNamenodeProtocol.newReflectiveBlockingService(
                new ClientNamenodeProtocolServerSideTranslatorPB(null)))
            .setBindAddress(HOST).setPort(0).setNumHandlers(1).build();
        server.start();
        OUT.println("P2PDATA_READY version=" + VersionInfo.getVersion()
            + " nn_rpc=" + server.getListenerAddress().getPort());
        OUT.flush();
        serve(words -> {
            throw new IllegalArgumentException("unknown command " + words[0]);
        });
    }

    static String port(Map<String, String> opts, String key) {
        return HOST + ":" + opts.getOrDefault(key, "0");
    }

    static void waitFor(String what, long millis, Check check) throws Exception {
        long deadline = System.currentTimeMillis() + millis;
        while (!check.done()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException(what + " did not happen within " + millis + " ms");
            }
            Thread.sleep(50);
        }
    }

    interface Check {
        boolean done() throws Exception;
    }

    interface Commands {
        String handle(String[] words) throws Exception;
    }

    /** Answer commands from stdin until it closes, then halt (no slow shutdown hooks). */
    static void serve(Commands commands) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split("\\s+");
            try {
                OUT.println("P2PDATA_OK " + commands.handle(words));
            } catch (Exception e) {
                e.printStackTrace();
                OUT.println("P2PDATA_ERR " + String.valueOf(e).replace('\n', ' '));
            }
            OUT.flush();
        }
        Runtime.getRuntime().halt(0);
    }

    static String xml(Map<String, String> props) {
        StringBuilder b = new StringBuilder("<?xml version=\"1.0\"?>\n<configuration>\n");
        for (Map.Entry<String, String> e : props.entrySet()) {
            b.append("<property><name>").append(escape(e.getKey())).append("</name><value>")
                .append(escape(e.getValue())).append("</value></property>\n");
        }
        return b.append("</configuration>\n").toString();
    }

    static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    /** Write atomically, so a reader never sees half a file. */
    static void write(File file, String text) throws IOException {
        File tmp = new File(file.getPath() + ".tmp");
        Files.write(tmp.toPath(), text.getBytes(StandardCharsets.UTF_8));
        Files.move(tmp.toPath(), file.toPath(), java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    static final class Hdfs {
        final Map<String, String> opts;
        final File base;
        final Configuration conf = new HdfsConfiguration();
        final List<DataNode> datanodes = new ArrayList<>();
        NameNode nn;

        Hdfs(Map<String, String> opts) {
            this.opts = opts;
            this.base = new File(opts.get("base")).getAbsoluteFile();
        }

        void run() throws Exception {
            // Centralized caching and LAZY_PERSIST need locked memory, which needs libhadoop's
            // mlock; Hadoop's own tests use this stand-in that accounts but does not lock.
            NativeIO.POSIX.setCacheManipulator(new NativeIO.POSIX.NoMlockCacheManipulator());
            File name = new File(base, "name");
            conf.set("dfs.namenode.name.dir", name.toURI().toString());
            conf.set("dfs.namenode.edits.dir", name.toURI().toString());
            conf.set("fs.defaultFS", "hdfs://" + port(opts, "nn_rpc"));
            conf.set("dfs.namenode.rpc-address", port(opts, "nn_rpc"));
            conf.set("dfs.namenode.http-address", port(opts, "nn_http"));
            conf.set("dfs.namenode.secondary.http-address", HOST + ":0");
            conf.set("dfs.namenode.backup.address", HOST + ":0");
            conf.set("dfs.namenode.backup.http-address", HOST + ":0");
            // Keeps WebHDFS redirects and the native client's DataNode addresses on loopback.
            conf.set("dfs.datanode.hostname", HOST);
            conf.set("dfs.namenode.datanode.registration.ip-hostname-check", "false");
            conf.set("dfs.replication", "1");
            conf.set("dfs.webhdfs.enabled", "true");
            conf.set("dfs.storage.policy.enabled", "true");
            conf.set("dfs.permissions.enabled", opts.getOrDefault("permissions", "false"));
            conf.set("dfs.namenode.acls.enabled", "true");
            conf.set("dfs.namenode.fs-limits.min-block-size", "0");
            conf.set("dfs.heartbeat.interval", "1");
            conf.set("dfs.namenode.heartbeat.recheck-interval", "5000");
            conf.set("dfs.namenode.redundancy.interval.seconds", "1");
            conf.set("dfs.namenode.safemode.extension", "0");
            conf.set("dfs.namenode.safemode.min.datanodes", "0");
            conf.set("dfs.datanode.lazywriter.interval.sec", "1");
            conf.set("dfs.datanode.balance.max.concurrent.moves", "50");
            conf.set("dfs.client.block.write.replace-datanode-on-failure.enable", "false");
            // Locked memory for the cache and LAZY_PERSIST (accounted only, see above).
            // LAZY_PERSIST reserves a whole block (128 MiB) of it per replica it writes.
            conf.set("dfs.datanode.max.locked.memory", String.valueOf(2L << 30));
            conf.set("dfs.namenode.path.based.cache.refresh.interval.ms", "1000");
            conf.set("dfs.cachereport.intervalMsec", "1000");
            // Small files on one machine: no need for the default 128 MiB reservation.
            conf.set("dfs.datanode.du.reserved", "0");
            conf.set("dfs.datanode.scan.period.hours", "-1");
            conf.set("dfs.blockreport.intervalMsec", "10000");
            // Issue delegation tokens although security is off, as a secure cluster would.
            conf.set("dfs.namenode.delegation.token.always-use", "true");
            boolean sps = Boolean.parseBoolean(opts.getOrDefault("sps", "false"));
            conf.set("dfs.storage.policy.satisfier.mode", sps ? "external" : "none");
            conf.set("dfs.storage.policy.satisfier.recheck.timeout.millis", "2000");
            boolean https = Boolean.parseBoolean(opts.getOrDefault("https", "false"));
            if (https) {
                conf.set("dfs.http.policy", "HTTP_AND_HTTPS");
                conf.set("dfs.namenode.https-address", port(opts, "nn_https"));
                conf.set("hadoop.ssl.enabled.protocols", "TLSv1.2,TLSv1.3");
            }

            if (!new File(name, "current/VERSION").exists()) {
                NameNode.format(conf);
            }
            nn = NameNode.createNameNode(new String[0], conf);
            conf.set("fs.defaultFS", "hdfs://" + HOST + ":" + nn.getNameNodeAddress().getPort());
            conf.set("dfs.namenode.rpc-address", HOST + ":" + nn.getNameNodeAddress().getPort());
            conf.set("dfs.namenode.http-address", HOST + ":" + nn.getHttpAddress().getPort());
            int count = Integer.parseInt(opts.getOrDefault("datanodes", "3"));
            for (int i = 0; i < count; i++) {
                datanodes.add(null);
                startDataNode(i);
            }
            // A restarted NameNode stays in safe mode until the DataNodes report their blocks.
            waitFor("NameNode leaving safe mode", 60_000,
                () -> !nn.getNamesystem().isInSafeMode());

            DistributedFileSystem fs = (DistributedFileSystem) new Path("/").getFileSystem(conf);
            for (String policy : opts.getOrDefault("ec", "").split(",")) {
                if (!policy.isEmpty()) {
                    fs.enableErasureCodingPolicy(policy);
                }
            }
            String pool = opts.getOrDefault("cachepool", "");
            if (!pool.isEmpty() && !hasPool(fs, pool)) {
                fs.addCachePool(new CachePoolInfo(pool));
            }
            if (sps) {
                // A satisfier killed with the JVM leaves its lock file under lease.
                fs.delete(new Path(SPS_ID), false);
                startSatisfier();
            }
            StringBuilder ready = new StringBuilder("P2PDATA_READY version=" + VersionInfo.getVersion()
                + " nn_rpc=" + nn.getNameNodeAddress().getPort()
                + " nn_http=" + nn.getHttpAddress().getPort());
            if (https) {
                ready.append(" nn_https=").append(nn.getHttpsAddress().getPort());
            }
            for (int i = 0; i < count; i++) {
                ready.append(ports(i));
            }
            OUT.println(ready);
            OUT.flush();
            serve(this::command);
        }

        static boolean hasPool(DistributedFileSystem fs, String pool) throws IOException {
            org.apache.hadoop.fs.RemoteIterator<org.apache.hadoop.hdfs.protocol.CachePoolEntry> it =
                fs.listCachePools();
            while (it.hasNext()) {
                if (it.next().getInfo().getPoolName().equals(pool)) {
                    return true;
                }
            }
            return false;
        }

        void startDataNode(int i) throws Exception {
            startDataNode(i, new String[0]);
        }

        /** Start DataNode i; {@code overrides} are extra "key=value" settings for it. */
        void startDataNode(int i, String[] overrides) throws Exception {
            Configuration dn = new HdfsConfiguration(conf);
            for (String override : overrides) {
                int eq = override.indexOf('=');
                dn.set(override.substring(0, eq), override.substring(eq + 1));
            }
            File dir = new File(base, "dn" + i);
            StringBuilder volumes = new StringBuilder();
            for (String tier : opts.getOrDefault("tiers", "disk,ssd,archive,ram_disk").split(",")) {
                volumes.append(volumes.length() == 0 ? "" : ",").append('[')
                    .append(tier.toUpperCase()).append(']').append(new File(dir, tier).toURI());
            }
            dn.set("dfs.datanode.data.dir", volumes.toString());
            String key = "dn" + i + "_";
            dn.set("dfs.datanode.address", port(opts, key + "xfer"));
            dn.set("dfs.datanode.ipc.address", port(opts, key + "ipc"));
            dn.set("dfs.datanode.http.address", port(opts, key + "http"));
            dn.set("dfs.datanode.https.address", port(opts, key + "https"));
            DataNode node = DataNode.createDataNode(new String[0], dn);
            datanodes.set(i, node);
            waitFor("DataNode " + i + " starting", 60_000, node::isDatanodeFullyStarted);
            // Remember the ports, so that a restarted DataNode keeps its address.
            opts.put(key + "xfer", String.valueOf(node.getXferPort()));
            opts.put(key + "ipc", String.valueOf(node.getIpcPort()));
            opts.put(key + "http", String.valueOf(node.getInfoPort()));
            if (Boolean.parseBoolean(opts.getOrDefault("https", "false"))) {
                opts.put(key + "https", String.valueOf(node.getInfoSecurePort()));
            }
        }

        String ports(int i) {
            String key = "dn" + i + "_";
            StringBuilder b = new StringBuilder();
            for (String what : new String[] {"xfer", "ipc", "http", "https"}) {
                if (opts.containsKey(key + what)) {
                    b.append(' ').append(key).append(what).append('=').append(opts.get(key + what));
                }
            }
            return b.toString();
        }

        void startSatisfier() throws Exception {
            // What "hdfs sps" (ExternalStoragePolicySatisfier) runs, as a thread of this JVM.
            List<URI> namenodes = new ArrayList<>(DFSUtil.getInternalNsRpcUris(conf));
            NameNodeConnector nnc = NameNodeConnector.newNameNodeConnectors(
                namenodes, "ExternalSPS", new Path(SPS_ID), conf,
                NameNodeConnector.DEFAULT_MAX_IDLE_ITERATIONS).get(0);
            StoragePolicySatisfier satisfier = new StoragePolicySatisfier(conf);
            satisfier.init(new ExternalSPSContext(satisfier, nnc));
            satisfier.start(StoragePolicySatisfierMode.EXTERNAL);
        }

        String command(String[] words) throws Exception {
            int i = words.length > 1 ? Integer.parseInt(words[1]) : -1;
            switch (words[0]) {
                case "stop-datanode":
                    // Like a crash for clients: connections drop, no graceful decommission.
                    datanodes.get(i).shutdown();
                    return "stopped datanode " + i;
                case "start-datanode":
                    startDataNode(i, Arrays.copyOfRange(words, 2, words.length));
                    return "started datanode" + ports(i);
                default:
                    throw new IllegalArgumentException("unknown command " + words[0]);
            }
        }
    }

    static final class Yarn {
        final Map<String, String> opts;
        final File base;

        Yarn(Map<String, String> opts) {
            this.opts = opts;
            this.base = new File(opts.get("base")).getAbsoluteFile();
        }

        YarnConfiguration serverConf() {
            YarnConfiguration conf = new YarnConfiguration();
            conf.set("fs.defaultFS", opts.getOrDefault("fs", "file:///"));
            conf.set("yarn.resourcemanager.hostname", HOST);
            for (String key : new String[] {"address", "scheduler.address",
                    "resource-tracker.address", "admin.address", "webapp.address",
                    "webapp.https.address"}) {
                conf.set("yarn.resourcemanager." + key, HOST + ":0");
            }
            conf.set("yarn.nodemanager.hostname", HOST);
            for (String key : new String[] {"address", "localizer.address", "webapp.address",
                    "webapp.https.address", "collector-service.address", "amrmproxy.address"}) {
                conf.set("yarn.nodemanager." + key, HOST + ":0");
            }
            conf.set("yarn.timeline-service.enabled", "false");
            conf.set("yarn.resourcemanager.recovery.enabled", "false");
            conf.set("yarn.nodemanager.recovery.enabled", "false");
            conf.set("yarn.log-aggregation-enable", "false");
            // A test machine's disk may be fuller than 90 %: do not mark the node unhealthy.
            conf.set("yarn.nodemanager.disk-health-checker.enable", "false");
            conf.set("yarn.nodemanager.local-dirs", new File(base, "nm-local").getPath());
            conf.set("yarn.nodemanager.log-dirs", new File(base, "nm-logs").getPath());
            conf.set("yarn.nodemanager.vmem-check-enabled", "false");
            conf.set("yarn.nodemanager.pmem-check-enabled", "false");
            conf.set("yarn.nodemanager.delete.debug-delay-sec", "600");
            conf.set("yarn.nodemanager.resource.memory-mb", opts.getOrDefault("memory_mb", "8192"));
            conf.set("yarn.nodemanager.resource.cpu-vcores", opts.getOrDefault("vcores", "8"));
            conf.set("yarn.scheduler.minimum-allocation-mb", "32");
            conf.set("yarn.scheduler.maximum-allocation-mb", opts.getOrDefault("memory_mb", "8192"));
            conf.set("yarn.scheduler.maximum-allocation-vcores", opts.getOrDefault("vcores", "8"));
            conf.set("yarn.nm.liveness-monitor.expiry-interval-ms", "10000");
            conf.set("yarn.resourcemanager.nodemanagers.heartbeat-interval-ms", "200");
            conf.set("yarn.am.liveness-monitor.expiry-interval-ms", "30000");
            // GPUs as a plain countable resource: scheduled, never probed.
            conf.set("yarn.resource-types", "yarn.io/gpu");
            conf.set("yarn.nodemanager.resource-type.yarn.io/gpu", opts.getOrDefault("gpus", "2"));
            conf.set("yarn.scheduler.capacity.resource-calculator",
                "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator");
            conf.set("yarn.scheduler.capacity.root.queues", "default");
            conf.set("yarn.scheduler.capacity.root.default.capacity", "100");
            conf.set("yarn.scheduler.capacity.root.default.maximum-capacity", "100");
            // One small node: application masters may use all of it.
            conf.set("yarn.scheduler.capacity.maximum-am-resource-percent", "1.0");
            conf.set("yarn.application.classpath", opts.getOrDefault("app_classpath", ""));
            // Resource types are read once per JVM, from resource-types.xml unless reset here.
            ResourceUtils.resetResourceTypes(conf);
            return conf;
        }

        /** The ResourceManager; writes yarn-site.xml and resource-types.xml for clients. */
        void run() throws Exception {
            YarnConfiguration conf = serverConf();
            // Applications' tracking URLs are computed from the configured web address, not
            // the bound one: pick a free port for it (the only port not left to the server).
            try (java.net.ServerSocket probe = new java.net.ServerSocket(
                    0, 1, java.net.InetAddress.getByName(HOST))) {
                conf.set("yarn.resourcemanager.webapp.address", HOST + ":" + probe.getLocalPort());
            }
            boolean services = classExists("org.apache.hadoop.yarn.service.webapp.ApiServer");
            conf.set("yarn.webapp.api-service.enable", String.valueOf(services));
            File confDir = new File(opts.get("conf"));
            Map<String, String> types = new LinkedHashMap<>();
            types.put("yarn.resource-types", "yarn.io/gpu");
            write(new File(confDir, "resource-types.xml"), xml(types));

            ResourceManager rm = new ResourceManager();
            rm.init(conf);
            rm.start();
            Configuration real = rm.getConfig();
            String webapp = HOST + ":" + webPort(rm);
            real.set("yarn.resourcemanager.webapp.address", webapp);
            Map<String, String> client = new LinkedHashMap<>();
            client.put("yarn.resourcemanager.hostname", HOST);
            for (String key : new String[] {"address", "scheduler.address",
                    "resource-tracker.address", "admin.address"}) {
                String name = "yarn.resourcemanager." + key;
                InetSocketAddress addr = real.getSocketAddr(name, HOST + ":0", 0);
                client.put(name, HOST + ":" + addr.getPort());
            }
            client.put("yarn.resourcemanager.webapp.address", webapp);
            // Skein checks resource types client-side and in its application master.
            client.put("yarn.resource-types", "yarn.io/gpu");
            client.put("yarn.nodemanager.hostname", HOST);
            client.put("yarn.timeline-service.enabled", "false");
            client.put("yarn.webapp.api-service.enable", String.valueOf(services));
            client.put("yarn.application.classpath", conf.get("yarn.application.classpath"));
            client.put("yarn.nodemanager.vmem-check-enabled", "false");
            write(new File(confDir, "yarn-site.xml"), xml(client));

            OUT.println("P2PDATA_READY version=" + VersionInfo.getVersion()
                + " rm_rpc=" + port(client.get("yarn.resourcemanager.address"))
                + " rm_web=" + webPort(rm)
                + " services=" + services);
            OUT.flush();
            serve(words -> {
                throw new IllegalArgumentException("unknown command " + words[0]);
            });
        }

        /** The NodeManager, in a JVM of its own: Hadoop's web apps route through Guice's
         * static filter pipeline, which only one web app per JVM can have. */
        void runNodeManager() throws Exception {
            YarnConfiguration conf = serverConf();
            // The ResourceManager's real addresses, as its JVM wrote them for clients (set,
            // not added: a resource would not override the port-0 values set above).
            Configuration written = new Configuration(false);
            written.addResource(new Path(new File(opts.get("conf"), "yarn-site.xml").toURI()));
            for (Map.Entry<String, String> e : written) {
                conf.set(e.getKey(), e.getValue());
            }
            NodeManager nm = new NodeManager();
            nm.init(conf);
            nm.start();
            waitFor("NodeManager registering", 60_000,
                () -> nm.getNMContext().getNodeId() != null
                    && nm.getNMContext().getNodeId().getPort() > 0
                    && nm.getNMContext().getHttpPort() > 0);
            OUT.println("P2PDATA_READY version=" + VersionInfo.getVersion()
                + " nm_rpc=" + nm.getNMContext().getNodeId().getPort()
                + " nm_web=" + nm.getNMContext().getHttpPort());
            OUT.flush();
            serve(words -> {
                throw new IllegalArgumentException("unknown command " + words[0]);
            });
        }

        static int webPort(ResourceManager rm) throws Exception {
            // The bound port (of a port-0 webapp) has only a package-private getter.
            java.lang.reflect.Method getter = ResourceManager.class.getDeclaredMethod("getWebapp");
            getter.setAccessible(true);
            return ((org.apache.hadoop.yarn.webapp.WebApp) getter.invoke(rm)).port();
        }

        /** Get (and with {@code restore}, set) GuiceFilter's static pipeline and context. */
        static Object[] guicePipeline(Object[] restore) throws Exception {
            Class<?> filter = com.google.inject.servlet.GuiceFilter.class;
            String[] names = {"pipeline", "servletContext"};
            Object[] values = new Object[names.length];
            for (int i = 0; i < names.length; i++) {
                java.lang.reflect.Field field = filter.getDeclaredField(names[i]);
                field.setAccessible(true);
                values[i] = field.get(null);
                if (restore != null) {
                    field.set(null, restore[i]);
                }
            }
            return values;
        }

        static String port(String address) {
            return address.substring(address.lastIndexOf(':') + 1);
        }

        static boolean classExists(String name) {
            try {
                Class.forName(name, false, P2pdataHadoop.class.getClassLoader());
                return true;
            } catch (ClassNotFoundException e) {
                return false;
            }
        }
    }
}
