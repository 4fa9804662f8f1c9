/*
 * Adapted from the minidfs test harness of the hdfs-native crate 0.13.5
 * (https://github.com/Kimahriman/hdfs-native, minidfs/src/main/java/main/Main.java),
 * Copyright the hdfs-native authors, licensed under the Apache License, Version 2.0
 * (http://www.apache.org/licenses/LICENSE-2.0). Changes for ebroker (deploy/local/hdfs.sh):
 * the output directory, the port base and the number of DataNodes come from arguments; with
 * --service it waits until killed (shutdown hook) instead of on stdin; "ha" runs two NameNodes
 * (nn0 standby, nn1 active, ConfiguredFailoverProxyProvider) and "observer" the original three
 * (nn1 observer, nn2 active, ObserverReadProxyProvider); it writes a small client conf dir
 * (conf/core-site.xml + conf/hdfs-site.xml) besides the full dump (minidfs-full.xml), copies
 * krb5.conf next to the keytab and writes an `env` file; router-based federation is dropped;
 * --host runs the plain cluster on another local address (see plainOnHost).
 *
 * Usage: main.Main --dir DIR [--port-base N] [--datanodes N] [--host ADDR] [--service] [feature ...]
 * features: security [integrity|privacy [aes]] [data_transfer_encryption] [token]
 *           ha | observer | viewfs, ec
 * Ports: NameNode i listens for RPC on base+2i and HTTP on base+2i+1 (127.0.0.1, or ADDR);
 * DataNodes and the KDC (UDP) use ephemeral ports.
 */
package main;

import java.io.BufferedReader;
import java.io.DataOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.FileUtil;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.client.HdfsClientConfigKeys;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.metrics2.lib.DefaultMetricsSystem;
import org.apache.hadoop.hdfs.security.token.delegation.DelegationTokenIdentifier;
import org.apache.hadoop.io.Text;
import org.apache.hadoop.minikdc.MiniKdc;
import org.apache.hadoop.security.Credentials;
import org.apache.hadoop.security.Credentials.SerializedFormat;
import org.apache.hadoop.security.token.Token;

import static org.apache.hadoop.fs.CommonConfigurationKeysPublic.*;
import static org.apache.hadoop.fs.viewfs.Constants.*;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import static org.apache.hadoop.hdfs.client.HdfsClientConfigKeys.*;

public class Main {
    static final String NAMESERVICE = "minidfs-ns";
    static final String PRINCIPAL = "hdfs/localhost";

    public static void main(String args[]) throws Exception {
        Set<String> flags = new HashSet<>();
        File dir = new File("target/test");
        int portBase = 9000;
        int numDataNodes = 3;
        boolean service = false;
        String host = "127.0.0.1";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--dir": dir = new File(args[++i]); break;
                case "--host": host = args[++i]; break;
                case "--port-base": portBase = Integer.parseInt(args[++i]); break;
                case "--datanodes": numDataNodes = Integer.parseInt(args[++i]); break;
                case "--service": service = true; break;
                default: flags.add(args[i]);
            }
        }
        if (flags.contains("observer")) {
            flags.add("ha");
        }
        dir = dir.getAbsoluteFile();
        dir.mkdirs();
        if (!host.equals("127.0.0.1")) {
            if (!flags.isEmpty()) {
                throw new IllegalArgumentException("--host " + host + " is for the plain cluster only, not with " + flags);
            }
            plainOnHost(host, dir, portBase, numDataNodes, service);
            return;
        }
        File keytab = new File(dir, "hdfs.keytab");
        File tokenFile = new File(dir, "delegation_token");
        MiniKdc kdc = null;

        // If an existing token exists, make sure to delete it
        tokenFile.delete();

        Configuration conf = new Configuration();
        conf.set("dfs.blocksize", "16777216"); // 16 MiB instead of 128 MiB
        conf.setInt("dfs.replication", Math.min(3, numDataNodes));
        if (flags.contains("security")) {
            kdc = new MiniKdc(MiniKdc.createConf(), new File(dir, "kdc"));
            kdc.setTransport("UDP");
            kdc.start();
            keytab.delete();
            kdc.createPrincipal(keytab, PRINCIPAL);

            conf.set(HADOOP_SECURITY_AUTHENTICATION, "kerberos");
            conf.set(HADOOP_SECURITY_AUTHORIZATION, "true");
            if (flags.contains("privacy")) {
                conf.set(HADOOP_RPC_PROTECTION, "privacy");
                conf.set(DFS_DATA_TRANSFER_PROTECTION_KEY, "privacy");
                if (flags.contains("aes")) {
                    conf.set(DFS_ENCRYPT_DATA_TRANSFER_CIPHER_SUITES_KEY, "AES/CTR/NoPadding");
                }
            } else if (flags.contains("integrity")) {
                conf.set(HADOOP_RPC_PROTECTION, "integrity");
                conf.set(DFS_DATA_TRANSFER_PROTECTION_KEY, "integrity");
            } else {
                conf.set(HADOOP_RPC_PROTECTION, "authentication");
                conf.set(DFS_DATA_TRANSFER_PROTECTION_KEY, "authentication");
            }
            if (flags.contains("data_transfer_encryption")) {
                // Force encryption for all connections, legacy method before SASL connections were a thing
                conf.set(DFSConfigKeys.DFS_ENCRYPT_DATA_TRANSFER_KEY, "true");
            }
            conf.set(DFSConfigKeys.DFS_NAMENODE_KEYTAB_FILE_KEY, keytab.getPath());
            conf.set(DFS_NAMENODE_KERBEROS_PRINCIPAL_KEY, PRINCIPAL + "@" + kdc.getRealm());
            conf.set(DFSConfigKeys.DFS_DATANODE_KEYTAB_FILE_KEY, keytab.getPath());
            conf.set(DFS_DATANODE_KERBEROS_PRINCIPAL_KEY, PRINCIPAL + "@" + kdc.getRealm());
            conf.set(DFSConfigKeys.DFS_BLOCK_ACCESS_TOKEN_ENABLE_KEY, "true");
            conf.set(DFSConfigKeys.IGNORE_SECURE_PORTS_FOR_TESTING_KEY, "true");
        }

        HdfsConfiguration hdfsConf = new HdfsConfiguration(conf);

        MiniDFSNNTopology nnTopology = generateTopology(flags, hdfsConf, portBase);

        if (flags.contains("ec")) {
            // Enough for the largest EC policy
            numDataNodes = Math.max(numDataNodes, 14);
        }

        MiniDFSCluster dfs = new MiniDFSCluster.Builder(hdfsConf, new File(dir, "data"))
            .nnTopology(nnTopology)
            .numDataNodes(numDataNodes)
            .build();

        String defaultFs;
        if (flags.contains("viewfs")) {
            defaultFs = "viewfs://minidfs-viewfs";
        } else if (flags.contains("ha")) {
            defaultFs = "hdfs://" + NAMESERVICE;
        } else {
            defaultFs = "hdfs://127.0.0.1:" + portBase;
        }
        hdfsConf.set(FS_DEFAULT_NAME_KEY, defaultFs);

        dfs.waitActive();

        int activeNamenode = 0;
        if (flags.contains("viewfs")) {
            // Each name services has two namenodes
            dfs.transitionToActive(0);
            dfs.transitionToActive(2);
        } else if (flags.contains("observer")) {
            activeNamenode = 2;
            dfs.transitionToObserver(1);
            dfs.transitionToActive(activeNamenode);
        } else if (flags.contains("ha")) {
            // nn1 is the active one: a client that tries nn0 first must fail over, as it
            // must on a real cluster after a failover.
            activeNamenode = 1;
            dfs.transitionToActive(activeNamenode);
        }
        dfs.waitActive();

        DistributedFileSystem fs = dfs.getFileSystem(activeNamenode);
        // Any test user may create its own top-level directory (on the plain cluster a
        // client's user is just its OS user name or HADOOP_USER_NAME).
        fs.setPermission(new Path("/"), new FsPermission((short) 0777));

        if (flags.contains("ec")) {
            fs.enableErasureCodingPolicy("RS-3-2-1024k");
            fs.enableErasureCodingPolicy("RS-10-4-1024k");
            fs.mkdirs(new Path("/ec-3-2"), new FsPermission("755"));
            fs.mkdirs(new Path("/ec-6-3"), new FsPermission("755"));
            fs.mkdirs(new Path("/ec-10-4"), new FsPermission("755"));
            fs.setErasureCodingPolicy(new Path("/ec-3-2"), "RS-3-2-1024k");
            fs.setErasureCodingPolicy(new Path("/ec-6-3"), "RS-6-3-1024k");
            fs.setErasureCodingPolicy(new Path("/ec-10-4"), "RS-10-4-1024k");
        }

        if (flags.contains("token")) {
            Credentials creds = new Credentials();
            if (flags.contains("ha")) {
                Token<DelegationTokenIdentifier> token = dfs.getNameNodeRpc(activeNamenode).getDelegationToken(null);
                token.setService(new Text("ha-hdfs:" + NAMESERVICE));
                creds.addToken(new Text("ha-hdfs:" + NAMESERVICE), token);
            } else {
                Token<DelegationTokenIdentifier> token = dfs.getNameNodeRpc().getDelegationToken(null);
                token.setService(new Text(dfs.getNameNode().getTokenServiceName()));
                creds.addToken(new Text(dfs.getNameNode().getTokenServiceName()), token);
            }

            try (DataOutputStream os = new DataOutputStream(new FileOutputStream(tokenFile))) {
                creds.writeTokenStorageToStream(os, SerializedFormat.WRITABLE);
            }
        }

        // The complete configuration, for diagnosis (what the harness of hdfs-native writes
        // as core-site.xml), and a client conf dir with only what a client needs.
        try (OutputStream os = new FileOutputStream(new File(dir, "minidfs-full.xml"))) {
            hdfsConf.writeXml(os);
        }
        File confDir = new File(dir, "conf");
        confDir.mkdirs();
        writeClientConf(hdfsConf, confDir);

        File krb5conf = null;
        if (kdc != null) {
            krb5conf = new File(dir, "krb5.conf");
            // MiniKdc's krb5.conf (realm, KDC on localhost:<udp port>), plus: no DNS
            // canonicalisation of service host names, so MIT's libgssapi (kinit, hdfs-native)
            // asks for hdfs/localhost whatever 127.0.0.1 reverse-resolves to.
            String text = new String(Files.readAllBytes(kdc.getKrb5conf().toPath()), "UTF-8");
            text = text.replace("[libdefaults]\n",
                "[libdefaults]\n    rdns = false\n    dns_canonicalize_hostname = false\n");
            Files.write(krb5conf.toPath(), text.getBytes("UTF-8"));
        }
        writeEnv(dir, confDir, defaultFs, portBase, krb5conf, keytab, kdc, tokenFile, flags);

        final MiniDFSCluster dfsToClose = dfs;
        final MiniKdc kdcToStop = kdc;
        final CountDownLatch closed = new CountDownLatch(1);
        Runnable shutdown = () -> {
            try {
                dfsToClose.close();
            } catch (Throwable t) {
                t.printStackTrace();
            }
            if (kdcToStop != null) {
                kdcToStop.stop();
            }
            closed.countDown();
        };

        System.out.println("Ready!");
        if (kdc != null) {
            System.out.println(krb5conf.getPath());
        }
        System.out.flush();

        if (service) {
            // Run until SIGTERM/SIGINT; the hook shuts the cluster and the KDC down.
            Runtime.getRuntime().addShutdownHook(new Thread(shutdown, "minidfs-shutdown"));
            while (true) {
                Thread.sleep(Long.MAX_VALUE);
            }
        }

        BufferedReader reader = new BufferedReader(new InputStreamReader(System.in));
        reader.readLine();
        shutdown.run();
        closed.await();
    }

    /**
     * The plain cluster (one NameNode, numDataNodes DataNodes, no security) with every server
     * bound to and advertising {@code host} instead of 127.0.0.1, e.g. the address of a bridge
     * that Linux network namespaces reach (deploy/local/netns.sh). MiniDFSCluster writes
     * 127.0.0.1 into the NameNode and DataNode addresses itself, so this starts the same
     * daemons directly, with MiniDFSCluster's test settings that matter here: no safe-mode
     * extension, metrics in mini-cluster mode (several DataNodes in one JVM). Clients reach the
     * DataNodes at the address they registered from (host: the NameNode is there), each on
     * its own ephemeral transfer port on host.
     */
    static void plainOnHost(String host, File dir, int portBase, int numDataNodes, boolean service)
            throws Exception {
        DefaultMetricsSystem.setMiniClusterMode(true);
        File data = new File(dir, "data");
        FileUtil.fullyDelete(data);
        data.mkdirs();
        String defaultFs = "hdfs://" + host + ":" + portBase;
        HdfsConfiguration conf = new HdfsConfiguration();
        conf.set("dfs.blocksize", "16777216"); // 16 MiB instead of 128 MiB
        conf.setInt("dfs.replication", Math.min(3, numDataNodes));
        conf.set(FS_DEFAULT_NAME_KEY, defaultFs);
        conf.set(DFSConfigKeys.DFS_NAMENODE_RPC_ADDRESS_KEY, host + ":" + portBase);
        conf.set(DFSConfigKeys.DFS_NAMENODE_HTTP_ADDRESS_KEY, host + ":" + (portBase + 1));
        conf.set(DFSConfigKeys.DFS_NAMENODE_NAME_DIR_KEY, new File(data, "name").toURI().toString());
        conf.setInt(DFSConfigKeys.DFS_NAMENODE_SAFEMODE_EXTENSION_KEY, 0);
        // The DataNodes register from host, which need not reverse-resolve to a name.
        conf.setBoolean(DFSConfigKeys.DFS_NAMENODE_DATANODE_REGISTRATION_IP_HOSTNAME_CHECK_KEY, false);
        conf.set("hadoop.tmp.dir", new File(data, "tmp").getPath());
        NameNode.format(conf);
        final NameNode nn = NameNode.createNameNode(new String[0], conf);
        final List<DataNode> dns = new ArrayList<>();
        for (int i = 0; i < numDataNodes; i++) {
            HdfsConfiguration dnConf = new HdfsConfiguration(conf);
            File dnDir = new File(data, "data" + (i + 1));
            dnDir.mkdirs();
            dnConf.set(DFSConfigKeys.DFS_DATANODE_DATA_DIR_KEY, dnDir.toURI().toString());
            dnConf.set(DFSConfigKeys.DFS_DATANODE_ADDRESS_KEY, host + ":0");
            dnConf.set(DFSConfigKeys.DFS_DATANODE_HTTP_ADDRESS_KEY, host + ":0");
            dnConf.set(DFSConfigKeys.DFS_DATANODE_IPC_ADDRESS_KEY, host + ":0");
            dnConf.set(DFSConfigKeys.DFS_DATANODE_HOST_NAME_KEY, host);
            dns.add(DataNode.createDataNode(new String[0], dnConf));
        }
        long deadline = System.currentTimeMillis() + 120_000;
        while (nn.getNamesystem().getNumLiveDataNodes() < numDataNodes || nn.isInSafeMode()
                || !dns.stream().allMatch(DataNode::isDatanodeFullyStarted)) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("after 120 s: " + nn.getNamesystem().getNumLiveDataNodes()
                    + " live DataNodes of " + numDataNodes + ", safe mode " + nn.isInSafeMode());
            }
            Thread.sleep(100);
        }
        try (FileSystem fs = FileSystem.newInstance(new java.net.URI(defaultFs), conf)) {
            fs.setPermission(new Path("/"), new FsPermission((short) 0777));
        }
        try (OutputStream os = new FileOutputStream(new File(dir, "minidfs-full.xml"))) {
            conf.writeXml(os);
        }
        File confDir = new File(dir, "conf");
        confDir.mkdirs();
        writeClientConf(conf, confDir);
        writeEnv(dir, confDir, defaultFs, portBase, null, null, null, null, new HashSet<>());

        final CountDownLatch closed = new CountDownLatch(1);
        Runnable shutdown = () -> {
            for (DataNode dn : dns) {
                try {
                    dn.shutdown();
                } catch (Throwable t) {
                    t.printStackTrace();
                }
            }
            try {
                nn.stop();
            } catch (Throwable t) {
                t.printStackTrace();
            }
            closed.countDown();
        };
        System.out.println("Ready!");
        System.out.flush();
        if (service) {
            Runtime.getRuntime().addShutdownHook(new Thread(shutdown, "minidfs-shutdown"));
            while (true) {
                Thread.sleep(Long.MAX_VALUE);
            }
        }
        new BufferedReader(new InputStreamReader(System.in)).readLine();
        shutdown.run();
        closed.await();
    }

    static boolean isClientKey(String key) {
        String[] prefixes = {
            "fs.defaultFS", "fs.viewfs.mounttable.",
            "hadoop.security.authentication", "hadoop.rpc.protection",
            "dfs.nameservices", "dfs.ha.namenodes.", "dfs.namenode.rpc-address",
            "dfs.namenode.http-address", "dfs.client.failover.proxy.provider.",
            "dfs.namenode.kerberos.principal", "dfs.datanode.kerberos.principal",
            "dfs.data.transfer.protection", "dfs.encrypt.data.transfer",
            "dfs.block.access.token.enable", "dfs.blocksize", "dfs.replication",
            "dfs.namenode.state.context.enabled",
        };
        for (String p : prefixes) {
            if (key.equals(p) || (p.endsWith(".") && key.startsWith(p))
                    || key.startsWith(p + ".")) {
                // dfs.namenode.kerberos.principal.pattern and the like are server settings
                if (key.startsWith("dfs.namenode.kerberos.principal.pattern")) {
                    return false;
                }
                return true;
            }
        }
        return false;
    }

    static void writeClientConf(Configuration full, File confDir) throws Exception {
        Map<String, String> core = new TreeMap<>();
        Map<String, String> hdfs = new TreeMap<>();
        for (Map.Entry<String, String> e : full) {
            String key = e.getKey();
            if (!isClientKey(key)) {
                continue;
            }
            String value = full.get(key);
            // MiniDFSCluster writes the addresses it bound (127.0.0.1) as localhost:<port>;
            // the client gets the address itself, whatever localhost resolves to.
            if (key.startsWith("dfs.namenode.rpc-address") || key.startsWith("dfs.namenode.http-address")) {
                value = value.replaceFirst("^localhost:", "127.0.0.1:");
            }
            // Keep only what differs from the defaults a client would assume anyway.
            String[] sources = full.getPropertySources(key);
            boolean fromDefaults = sources != null && sources.length > 0
                && (sources[0].endsWith("-default.xml"));
            if (fromDefaults) {
                continue;
            }
            if (key.startsWith("fs.") || key.startsWith("hadoop.")) {
                core.put(key, value);
            } else {
                hdfs.put(key, value);
            }
        }
        writeSite(new File(confDir, "core-site.xml"), core);
        writeSite(new File(confDir, "hdfs-site.xml"), hdfs);
    }

    static void writeSite(File file, Map<String, String> props) throws Exception {
        try (PrintWriter w = new PrintWriter(file, "UTF-8")) {
            w.println("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            w.println("<!-- client configuration of a MiniDFSCluster, written by deploy/local/hdfs -->");
            w.println("<configuration>");
            for (Map.Entry<String, String> e : props.entrySet()) {
                w.println("  <property><name>" + xml(e.getKey()) + "</name><value>" + xml(e.getValue())
                    + "</value></property>");
            }
            w.println("</configuration>");
        }
    }

    static String xml(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    static void writeEnv(File dir, File confDir, String defaultFs, int portBase, File krb5conf,
            File keytab, MiniKdc kdc, File tokenFile, Set<String> flags) throws Exception {
        List<String> lines = new ArrayList<>();
        lines.add("# written by deploy/local/hdfs/src/main/java/main/Main.java; source it");
        lines.add("export HADOOP_CONF_DIR=" + confDir.getPath());
        if (kdc == null) {
            lines.add("export EBROKER_TEST_HDFS=" + defaultFs);
        } else {
            lines.add("export EBROKER_TEST_HDFS_SECURE=" + defaultFs);
            lines.add("export KRB5_CONFIG=" + krb5conf.getPath());
            lines.add("export EBROKER_TEST_HDFS_KEYTAB=" + keytab.getPath());
            lines.add("export EBROKER_TEST_HDFS_PRINCIPAL=" + PRINCIPAL + "@" + kdc.getRealm());
            if (flags.contains("token")) {
                lines.add("export EBROKER_TEST_HDFS_TOKEN_FILE=" + tokenFile.getPath());
            }
            // for Java clients (the JVM does not read KRB5_CONFIG)
            lines.add("export HADOOP_OPTS=\"-Djava.security.krb5.conf=" + krb5conf.getPath() + "\"");
        }
        File tmp = new File(dir, "env.tmp");
        try (PrintWriter w = new PrintWriter(tmp, "UTF-8")) {
            for (String l : lines) {
                w.println(l);
            }
        }
        Files.move(tmp.toPath(), new File(dir, "env").toPath(), StandardCopyOption.REPLACE_EXISTING,
            StandardCopyOption.ATOMIC_MOVE);
    }

    public static MiniDFSNNTopology generateTopology(Set<String> flags, Configuration conf, int portBase) {
        MiniDFSNNTopology nnTopology;
        if (flags.contains("viewfs")) {
            nnTopology = new MiniDFSNNTopology()
                .addNameservice(new MiniDFSNNTopology.NSConf("ns0")
                    .addNN(nn("nn0", portBase, 0)).addNN(nn("nn1", portBase, 1)))
                .addNameservice(new MiniDFSNNTopology.NSConf("ns1")
                    .addNN(nn("nn0", portBase, 2)).addNN(nn("nn1", portBase, 3)));
            conf.set(HdfsClientConfigKeys.Failover.PROXY_PROVIDER_KEY_PREFIX + ".ns0", "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
            conf.set(HdfsClientConfigKeys.Failover.PROXY_PROVIDER_KEY_PREFIX + ".ns1", "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
            conf.set(DFSConfigKeys.DFS_NAMENODE_STATE_CONTEXT_ENABLED_KEY, "true");
            conf.set(DFSConfigKeys.DFS_HA_TAILEDITS_INPROGRESS_KEY, "true");
            conf.set(DFSConfigKeys.DFS_HA_TAILEDITS_PERIOD_KEY, "0ms");
            conf.set(CONFIG_VIEWFS_PREFIX + ".minidfs-viewfs.link./mount1", "hdfs://ns0/nested");
            conf.set(CONFIG_VIEWFS_PREFIX + ".minidfs-viewfs.linkFallback", "hdfs://ns1/nested");
        } else if (flags.contains("observer")) {
            MiniDFSNNTopology.NSConf ns = new MiniDFSNNTopology.NSConf(NAMESERVICE);
            for (int i = 0; i < 3; i++) {
                ns.addNN(nn("nn" + i, portBase, i));
            }
            nnTopology = new MiniDFSNNTopology().addNameservice(ns);
            conf.set(HdfsClientConfigKeys.Failover.PROXY_PROVIDER_KEY_PREFIX + "." + NAMESERVICE, "org.apache.hadoop.hdfs.server.namenode.ha.ObserverReadProxyProvider");
            conf.set(DFSConfigKeys.DFS_NAMENODE_STATE_CONTEXT_ENABLED_KEY, "true");
            conf.set(DFSConfigKeys.DFS_HA_TAILEDITS_INPROGRESS_KEY, "true");
            conf.set(DFSConfigKeys.DFS_HA_TAILEDITS_PERIOD_KEY, "0ms");
            conf.set(DFSConfigKeys.DFS_NAMENODE_ACCESSTIME_PRECISION_KEY, "0");
        } else if (flags.contains("ha")) {
            nnTopology = new MiniDFSNNTopology().addNameservice(
                new MiniDFSNNTopology.NSConf(NAMESERVICE)
                    .addNN(nn("nn0", portBase, 0)).addNN(nn("nn1", portBase, 1)));
            conf.set(HdfsClientConfigKeys.Failover.PROXY_PROVIDER_KEY_PREFIX + "." + NAMESERVICE, "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
            // the standby reads the shared edits often, so a failover finds it current
            conf.set(DFSConfigKeys.DFS_HA_TAILEDITS_PERIOD_KEY, "1s");
        } else {
            nnTopology = MiniDFSNNTopology.simpleSingleNN(portBase, portBase + 1);
        }
        return nnTopology;
    }

    static MiniDFSNNTopology.NNConf nn(String id, int portBase, int index) {
        return new MiniDFSNNTopology.NNConf(id)
            .setIpcPort(portBase + 2 * index)
            .setHttpPort(portBase + 2 * index + 1);
    }
}
