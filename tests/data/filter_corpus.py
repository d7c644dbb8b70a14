"""Clean paragraphs (English, Chinese, mixed, dialogue, long articles) and planted bad documents, each
bad one named after the filter meant to catch it. Shared by the filter and pipeline tests."""

CLEAN_EN = {
    "news": (
        "The city council voted on Tuesday to extend the downtown tram line by four kilometres, ending a debate "
        "that had dragged on for almost two years. Supporters argued that the extension would connect the "
        "university campus with the central station and take thousands of cars off the road each day. Opponents "
        "questioned the cost, which engineers now put at 310 million dollars, and warned that construction would "
        "disrupt small shops along Market Street. The mayor said work should begin next spring and that the "
        "first trams could run on the new section before the end of 2027."
    ),
    "science": (
        "Photosynthesis is the process by which green plants, algae and some bacteria turn light into chemical "
        "energy. In the chloroplasts of a leaf, pigments such as chlorophyll absorb mostly red and blue light and "
        "use that energy to split water molecules. The oxygen released in this step escapes into the air, while "
        "the hydrogen is used, together with carbon dioxide taken from the atmosphere, to build sugars. These "
        "sugars feed the plant and, through food chains, almost every other living thing on Earth. Scientists "
        "estimate that photosynthesis captures about six times more energy each year than human civilisation uses."
    ),
    "history": (
        "When the Great Exhibition opened in London in May 1851, more than six million people came to see it "
        "over the following five months. The exhibition was housed in the Crystal Palace, a huge structure of "
        "iron and glass designed by Joseph Paxton, a gardener who had built greenhouses for the Duke of "
        "Devonshire. Visitors walked past steam engines, printing presses, textiles from India and a giant "
        "diamond. The profits were used to found the museums of South Kensington, which still attract millions "
        "of visitors today."
    ),
    "howto": (
        "To repot a houseplant, choose a new pot that is only a few centimetres wider than the old one and make "
        "sure it has a drainage hole. Water the plant a day before, so that the root ball holds together. Turn "
        "the old pot on its side, support the base of the stems with one hand and gently ease the plant out. "
        "Loosen any roots that circle the bottom, place the plant at the same depth as before and fill the gaps "
        "with fresh compost. Firm the soil lightly, water it well and keep the plant out of direct sun for a week "
        "while it settles."
    ),
    "fiction": (
        "Margaret had not been back to the village since her father's funeral, and at first nothing seemed to "
        "have changed. The bakery still had the same faded blue awning, and the church clock was still ten "
        "minutes slow. But when she turned the corner by the river, she saw that the old mill had gone. In its "
        "place stood a row of neat grey houses with tiny gardens, and a boy was kicking a ball against the wall "
        "where she used to sit and read. She stood there for a long time, holding her suitcase, trying to "
        "remember the sound the wheel had made."
    ),
    "review": (
        "The new laptop is thinner and lighter than last year's model, and the screen is noticeably brighter "
        "outdoors. Battery life is the real surprise: in our tests it lasted just over fourteen hours of video "
        "playback and a full working day of browsing, email and document editing. The keyboard is comfortable, "
        "although the keys are a little shallow, and the speakers are better than we expected for a machine of "
        "this size. The main drawback is the price, which puts it out of reach for many students, and the fact "
        "that it has only two ports."
    ),
    "biography": (
        "Ada Lovelace was born in London in 1815, the only legitimate child of the poet Lord Byron. Her mother "
        "insisted that she study mathematics and science, hoping to steer her away from her father's "
        "temperament. In 1833 she met Charles Babbage, who was working on a mechanical calculator, and the two "
        "began a long friendship. Her notes on his proposed Analytical Engine, published in 1843, include a "
        "method for computing Bernoulli numbers that is often described as the first computer program. She died "
        "of cancer at the age of 36."
    ),
    "sports": (
        "Spain won the final 2-1 after extra time, with a header from their substitute striker in the 113th "
        "minute. The first half was tense and cautious, and neither goalkeeper had much to do until shortly "
        "before the break, when a deflected shot gave the Dutch side the lead. Spain equalised from a penalty "
        "twenty minutes from time and then pushed forward, hitting the post twice. The coach said afterwards "
        "that his players had shown great patience and that the victory belonged to the whole squad, not only "
        "to those who had started the match."
    ),
    "economics": (
        "Inflation in the euro area slowed to 2.4 percent in November, down from 2.9 percent a month earlier, "
        "according to preliminary figures from the statistics office. Energy prices fell for the sixth month in "
        "a row, while the cost of food, alcohol and tobacco rose more slowly than in the summer. Services "
        "inflation, which the central bank watches closely because it reflects wages, remained stubborn at "
        "about four percent. Economists said the figures made a cut in interest rates early next year more "
        "likely, although the bank has said it wants to see more evidence that price pressures are easing."
    ),
    "recipe": (
        "For a simple tomato soup, heat two tablespoons of olive oil in a large pan and fry a chopped onion "
        "until it is soft and golden. Add two cloves of garlic and a teaspoon of sugar, then tip in a kilogram "
        "of ripe tomatoes, roughly chopped, and half a litre of vegetable stock. Let the soup simmer for about "
        "twenty minutes, until the tomatoes have broken down. Blend it until smooth, season with salt and black "
        "pepper, and stir in a little cream if you like. Serve it hot with crusty bread and a few basil leaves."
    ),
}

CLEAN_ZH = {
    "news": (
        "本市交通委员会周二宣布，地铁十二号线东延段工程将于明年三月正式开工，预计二〇二八年底建成通车。"
        "东延段全长约十一公里，共设八座车站，建成后将把新城片区与市中心的通勤时间从一个多小时缩短到四十分钟左右。"
        "交通委员会负责人表示，施工期间部分路段将实行交通管制，相关部门会提前发布绕行方案，"
        "尽量减少对沿线居民和商户的影响。不少市民在接受采访时说，他们已经盼了很多年，希望工程能够按期完成。"
    ),
    "encyclopedia": (
        "大熊猫是中国特有的哺乳动物，主要生活在四川、陕西和甘肃的山区。它们的毛色黑白相间，"
        "体形肥圆，成年个体的体重一般在八十到一百二十公斤之间。大熊猫虽然属于食肉目，但食物中百分之九十九以上是竹子，"
        "每天要花十多个小时进食。由于栖息地破碎和繁殖率低，大熊猫曾一度面临灭绝的危险。"
        "经过几十年的保护，野生大熊猫的数量已经增加到一千八百多只，受威胁等级也从濒危降为易危。"
    ),
    "story": (
        "那年冬天特别冷，外婆家门口的小河结了厚厚一层冰。我每天放学以后都要跑到河边，看村里的孩子们在冰上滑来滑去。"
        "外婆总是站在院子里喊我回去吃饭，说冰还不够结实，掉下去可不是闹着玩的。"
        "有一天傍晚，我趁她不注意，偷偷走到了河中间，脚下忽然传来一声闷响。我吓得一动也不敢动，"
        "直到表哥跑过来把我拉回岸上。那天晚上外婆没有骂我，只是给我煮了一碗热乎乎的姜汤。"
    ),
    "tech": (
        "大语言模型的训练通常分为预训练和微调两个阶段。在预训练阶段，模型在海量的网页、书籍和代码数据上学习预测下一个词，"
        "从而掌握语言的基本规律和大量的世界知识。微调阶段则使用规模较小但质量更高的指令数据，"
        "让模型学会按照人类的要求回答问题。研究人员发现，数据的质量往往比数量更重要：重复的网页、"
        "乱码和广告会浪费算力，甚至让模型学到错误的习惯，因此在训练之前对数据进行清洗和去重是必不可少的一步。"
    ),
    "history": (
        "郑和是明朝初年的航海家，原本姓马，云南昆阳人。从一四〇五年到一四三三年，他先后七次率领船队远航，"
        "到达了东南亚、南亚、西亚和东非的三十多个国家和地区。船队规模庞大，最多时有两百多艘船和两万多名船员，"
        "不仅带去了丝绸、瓷器和茶叶，也带回了香料、药材和珍奇动物。郑和下西洋加强了中国与海外各国的联系，"
        "是世界航海史上的一件大事，比欧洲人的大航海时代早了半个多世纪。"
    ),
    "recipe": (
        "做西红柿炒鸡蛋，先把三个鸡蛋打进碗里，加一点盐搅匀。两个西红柿洗干净，切成小块备用。"
        "锅里倒油，油热以后倒入蛋液，等鸡蛋稍微凝固就用铲子划散，盛出来放在一边。"
        "锅里再加一点油，放入西红柿翻炒，炒出汤汁以后加少许白糖和盐调味。最后把炒好的鸡蛋倒回锅里，"
        "和西红柿一起翻炒几下，撒上葱花就可以出锅了。这道菜酸甜可口，是很多家庭餐桌上的常见菜。"
    ),
    "travel": (
        "去年秋天我们一家人去了一趟云南大理。古城不大，青石板路两边都是白墙青瓦的老房子，很多院子里种着三角梅和桂花。"
        "我们租了两辆自行车，沿着洱海骑了大半天，一边是碧蓝的湖水，一边是金黄的稻田，远处的苍山上还飘着白云。"
        "傍晚在海边的小饭馆吃了酸辣鱼和烤乳扇，老板是本地白族人，很热情地给我们介绍附近值得去的村子。"
        "孩子说，这是他去过的最美的地方。"
    ),
    "economy": (
        "国家统计局今天发布的数据显示，今年前三季度全国居民人均可支配收入比上年同期名义增长百分之六点三，"
        "扣除价格因素后实际增长百分之五点九。其中，城镇居民收入增长略慢于农村居民，城乡收入差距继续缩小。"
        "从消费来看，服务消费增长较快，旅游、文化和体育相关支出明显增加。分析人士认为，"
        "随着就业形势逐步改善，居民的消费意愿有望进一步提升，但外部环境的不确定性仍然需要关注。"
    ),
    "sports": (
        "在昨晚结束的全国女子排球联赛决赛中，主场作战的江苏队以三比二战胜上海队，时隔五年再次夺得冠军。"
        "比赛一开始，上海队凭借强攻连得两局，江苏队在第三局调整了接发球阵容，逐渐找回状态。"
        "决胜局双方比分交替上升，一直战至十五平，最终江苏队依靠一记拦网得分锁定胜局。"
        "赛后，江苏队主教练说，队员们在落后的情况下没有放弃，这场胜利是全队共同努力的结果。"
    ),
    "health": (
        "医生提醒，秋冬季节是流感高发期，老人、儿童和患有慢性病的人群最好尽早接种流感疫苗。"
        "接种疫苗后大约两周，身体才能产生足够的保护性抗体，因此最好在流行季到来之前完成接种。"
        "日常生活中，要注意勤洗手、多通风，在人多的室内场所佩戴口罩。如果出现高热、咳嗽、全身酸痛等症状，"
        "应及时就医，不要自行服用抗生素，因为抗生素对病毒引起的流感并没有效果。"
    ),
}

LONG_ZH = (
    "为深入推进生活垃圾分类工作，市城市管理委员会近日召开全市生活垃圾分类工作推进会。会议指出，"
    "自《生活垃圾管理条例》实施以来，全市生活垃圾分类工作取得了明显成效，居民垃圾分类的知晓率和参与率不断提高，"
    "厨余垃圾分出量比条例实施前增长了近三倍，其他垃圾的清运量持续下降。\n\n"
    "会议强调，生活垃圾分类是一项长期性、系统性的工作，既要抓好前端分类投放，也要抓好中端分类收集运输和末端分类处理。"
    "各区要进一步完善生活垃圾分类设施，在居住小区合理设置分类投放点，推动垃圾分类投放点的规范化建设；"
    "要加强对分类收集运输车辆的管理，坚决杜绝混装混运；要加快推进厨余垃圾处理设施建设，提高厨余垃圾的资源化利用水平。\n\n"
    "会议要求，各街道、乡镇要充分发挥基层党组织的作用，组织志愿者在垃圾分类投放点开展桶前值守和宣传引导，"
    "帮助居民养成垃圾分类的好习惯。同时，要加强执法检查，对不按规定分类投放垃圾的单位和个人依法进行处罚。"
    "市城市管理委员会将定期对各区生活垃圾分类工作进行检查评估，并向社会公布评估结果。\n\n"
    "据了解，今年以来，全市已新建和改造垃圾分类投放点一千二百多个，配备分类收集运输车辆三百余辆，"
    "新增厨余垃圾处理能力每日八百吨。下一步，本市将继续完善生活垃圾分类的法规和标准体系，"
    "推动生活垃圾减量化、资源化和无害化处理，努力让垃圾分类成为全体市民的自觉行动。"
)

LONG_EN = (
    "The city's waste management department held a meeting this week to review progress on household waste "
    "sorting. Officials said that since the new waste regulations took effect, awareness of waste sorting "
    "among residents has risen steadily, and the amount of food waste collected separately has almost "
    "tripled, while the volume of residual waste sent to landfill has continued to fall.\n\n"
    "The meeting stressed that household waste sorting is a long-term effort that involves every stage of "
    "the chain: sorting at home, separate collection and transport, and separate treatment. Each district "
    "was asked to improve its sorting facilities, to place collection points sensibly in residential "
    "neighbourhoods, and to make sure that sorted waste is not mixed again in the collection trucks. The "
    "department also called for faster construction of food waste treatment plants, so that more of the "
    "collected food waste can be turned into compost and biogas.\n\n"
    "Local officials were told to recruit volunteers who can stand by the collection points, explain the "
    "rules and help residents get into the habit of sorting their waste. Inspections will also be stepped up, "
    "and businesses or individuals who repeatedly ignore the rules may be fined. The department will assess "
    "each district's waste sorting work every quarter and publish the results."
)

DIALOGUE_ZH = (
    "“你怎么又来了？”老板娘头也不抬地问。\n"
    "“路过，顺便看看。”他把伞靠在门边，抖了抖身上的雨水。\n"
    "“顺便？这个月你已经顺便了七次了。”\n"
    "“那说明你家的面好吃嘛。”他笑着坐下，“老样子，一碗牛肉面，多放香菜。”\n"
    "老板娘终于抬起头看了他一眼：“香菜今天没有了，下雨天菜贩子没来。”\n"
    "“那就不要香菜。”他想了想，又补充道，“多放点辣椒吧，天冷。”\n"
    "厨房里很快传来了锅铲碰撞的声音，窗外的雨越下越大。"
)

MIXED_ZH = (
    "我们在实验中使用了PyTorch 2.1和Hugging Face的Transformers库，在8张A100 GPU上训练了一个70亿参数的模型。"
    "训练数据来自Common Crawl、Wikipedia和GitHub等公开来源，经过去重和质量过滤以后共有大约1.2万亿个token。"
    "为了节省显存，我们采用了FlashAttention和ZeRO-3优化，并把序列长度设置为4096。"
    "实验结果表明，模型在MMLU和C-Eval上的得分分别达到了62.5和65.3，明显好于同等规模的基线模型。"
)
MIXED_EN = (
    "Mapo tofu (麻婆豆腐) is one of the best known dishes of Sichuan cuisine. It is made with soft tofu set in "
    "a spicy, oily sauce of fermented broad bean paste (豆瓣酱), fermented black beans and minced beef or pork, "
    "and it is finished with ground Sichuan pepper, which gives the dish its numbing heat, known in Chinese as "
    "ma la (麻辣). According to legend, the recipe was created in the nineteenth century by a woman who ran a "
    "small restaurant near Chengdu and whose face was marked by smallpox scars."
)

# name -> text; the expected filter is the name without its _zh/_ja suffix.
BAD = {
    "length": "Subscribe to our newsletter for the latest deals and updates.",
    "length_zh": "欢迎访问本站，注册会员即可享受更多优惠。",
    "blocklist": (
        "Looking for something to watch tonight? We collected the best clips from around the web so that you "
        "do not have to search for them yourself. Every video is checked by our team and updated daily, and "
        "you can browse by category, by length or by popularity. Click here for free porn videos and the "
        "hottest new uploads, with no registration and no credit card required to get started today."
    ),
    "blocklist_zh": (
        "本站提供最新最准的六合彩开奖结果和资料大全，每期更新，免费查看。我们拥有专业的分析团队，"
        "为您提供精准的预测和推荐，让您轻松中大奖。注册会员即可获得独家内部资料，欢迎广大彩民朋友前来咨询，"
        "客服二十四小时在线为您服务。"
    ),
    "symbol_ratio": (
        "Sunset at the beach with the best people #sunset #beach #summer #love #friends #happy #travel "
        "#photooftheday #instagood #nature #sea #sky #goodvibes #weekend #fun #holiday #vacation #tbt "
        "#picoftheday #beautiful #instadaily #life #smile #ocean #sun #photography #follow #like4like "
        "#followme #style #cute #me #fashion #art #selfie #family #food #girl #repost #amazing #fitness "
        "#motivation #nofilter"
    ),
    "bullet_lines": "\n".join(
        "- " + item
        for item in (
            "Home and garden furniture for every room",
            "Kitchen appliances and cookware sets on sale",
            "Bedding, towels and bathroom accessories",
            "Lighting, lamps and ceiling fans for the home",
            "Office chairs, desks and storage solutions",
            "Outdoor grills, patio sets and umbrellas",
            "Rugs, curtains and wall decor for the living room",
            "Toys, games and books for children of all ages",
            "Pet supplies, beds and food for dogs and cats",
            "Gift cards and the weekly deals of the store",
        )
    ),
    "ellipsis_lines": "\n".join(
        (
            "Scientists say the new battery could change the way we charge our phones and...",
            "Ten things you did not know about the history of the humble potato, number seven will...",
            "The mayor announced a plan to build a new park near the river, but residents are...",
            "Why experts think the housing market will cool down next year and what it means for...",
            "A local bakery has won a national prize for the best sourdough bread in the...",
            "How to save money on your energy bills this winter without turning off the...",
        )
    ),
    "duplicate_paragraphs_zh": "\n\n".join(
        (
            "楼主说得很有道理，我家孩子今年也在准备中考，\n每天晚上都要学习到十一点多，看着真是心疼。\n不知道大家有没有什么好的复习方法可以分享一下？",
            "顶一下！",
            "同问，坐等高手回答。",
            "我的经验是不要一味地刷题，\n要把做错的题目整理到错题本上，\n考前重点复习这些容易出错的地方，效果会比盲目做题好很多。",
            "顶一下！",
            "同问，坐等高手回答。",
            "顶一下！",
            "同问，坐等高手回答。",
        )
    ),
    "duplicate_lines": "\n".join(
        line
        for product, price in (
            ("Classic leather wallet with coin pocket and six card slots, in brown or black.", "$29.99"),
            ("Slim aluminium card holder that blocks RFID signals and fits in any front pocket.", "$19.99"),
            ("Canvas weekend bag with a padded laptop sleeve and a detachable shoulder strap.", "$59.99"),
            ("Travel organiser with space for passports, boarding passes, a pen and a phone.", "$24.99"),
        )
        for line in (product, f"Price: {price}", "In stock", "Free delivery on orders over $50", "Add to cart")
    ),
    "alpha_ratio": (
        "Date Open High Low Close Volume\n"
        "2024-03-01 182.10 184.35 181.02 183.90 51,204,300\n"
        "2024-03-04 183.95 185.10 182.55 184.12 47,880,100\n"
        "2024-03-05 184.00 184.20 180.71 181.33 58,102,900\n"
        "2024-03-06 181.40 183.02 180.95 182.76 44,391,000\n"
        "2024-03-07 182.90 186.48 182.60 186.11 62,015,700\n"
        "2024-03-08 186.20 187.30 184.92 185.07 53,772,400\n"
        "2024-03-11 185.00 185.95 183.10 184.40 41,120,800\n"
        "2024-03-12 184.52 188.00 184.30 187.66 66,480,200\n"
        "2024-03-13 187.70 188.45 186.02 186.93 49,306,600"
    ),
    "alpha_ratio_zh": (
        "【限时特惠】★★★★★ ¥99.00 → ¥59.00 ！！！\n"
        "☆☆☆ 2024/11/11 00:00—23:59 ☆☆☆ ✔✔✔ 【包邮】【正品】【现货】 ★★★★★\n"
        "⚡⚡⚡ ¥¥¥ 100% ✔ 7×24h ✔ 30天 ✔ ✔ ✔ ◆◆◆ ▲▲▲ ●●● ■■■ ♥♥♥ ※※※ ☎ 400-800-1234 ☎ ☎ ☎ "
        "→→→ ↓↓↓ ↑↑↑ ←←← ◎◎◎ ◇◇◇ ○○○ □□□ △△△ ▽▽▽ ♪♪♪ ♫♫♫ ✿✿✿ ❀❀❀ ❤❤❤"
    ),
    "mean_word_length": (
        "https://shop.example.com/products/mens-leather-wallet-brown-rfid-blocking "
        "https://shop.example.com/products/womens-canvas-tote-bag-large-zip "
        "https://shop.example.com/products/stainless-steel-water-bottle-insulated "
        "https://shop.example.com/products/wireless-bluetooth-headphones-noise-cancelling "
        "https://shop.example.com/products/ergonomic-office-chair-lumbar-support "
        "https://shop.example.com/products/portable-phone-charger-power-bank "
    )
    * 1
    + " ".join(f"https://shop.example.com/category/item-{i:04d}-summer-collection" for i in range(50)),
    "language": (
        "Der Stadtrat hat am Dienstag beschlossen, die Straßenbahnlinie in der Innenstadt um vier Kilometer zu "
        "verlängern. Damit endet eine Debatte, die sich fast zwei Jahre hingezogen hatte. Befürworter "
        "argumentierten, dass die Verlängerung die Universität mit dem Hauptbahnhof verbinden und täglich "
        "tausende Autos von der Straße holen werde. Gegner kritisierten die Kosten und warnten, dass die "
        "Bauarbeiten kleine Geschäfte entlang der Marktstraße belasten würden."
    ),
    "language_ja": (
        "東京都は火曜日、都心の路面電車を四キロ延伸する計画を正式に決定した。延伸区間は大学のキャンパスと"
        "中央駅を結び、一日に数千台の車を道路から減らす効果があると見込まれている。一方で、建設費が高すぎる"
        "という批判や、工事中に商店街の客足が減るのではないかという懸念の声も上がっている。"
    ),
    "stop_words": (
        "cheap watches luxury watches replica watches mens watches womens watches sports watches diving "
        "watches gold watches silver watches smart watches digital watches analog watches automatic watches "
        "quartz watches vintage watches designer watches discount watches watch straps watch bands watch "
        "batteries watch repair watch boxes watch winders pocket watches kids watches military watches "
        "pilot watches chronograph watches skeleton watches"
    ),
    "stop_words_zh": (
        "手机 华为手机 苹果手机 小米手机 手机壳 手机膜 充电器 数据线 蓝牙耳机 无线耳机 移动电源 充电宝 "
        "平板电脑 笔记本电脑 台式电脑 机械键盘 无线鼠标 显示器 路由器 智能手表 运动手环 智能音箱 "
        "数码相机 单反相机 镜头 三脚架 存储卡 固态硬盘 移动硬盘 优盘 打印机 投影仪 电子书 游戏机"
    ),
    "top_ngram": (
        "Buy now and save with our spring sale. Buy now to get free shipping on every order over fifty "
        "dollars. Buy now because stock is limited and the offer ends on Sunday. Buy now and pay later with "
        "our easy payment plans. Buy now, buy now, buy now: the best prices of the year are waiting for you "
        "in the store, so buy now and buy now again. Buy now! Buy now!"
    ),
    "duplicate_ngram_zh": (
        "我们公司是一家集研发、生产和销售于一体的高新技术企业，主要产品包括不锈钢管材、板材和各类配件，"
        "产品远销欧美、东南亚等三十多个国家和地区。我们公司是一家集研发、生产和销售于一体的高新技术企业，"
        "始终坚持质量第一、客户至上的经营理念，欢迎新老客户来电咨询。"
    ),
}


CLEAN = {
    **{f"en/{name}": text for name, text in CLEAN_EN.items()},
    **{f"zh/{name}": text for name, text in CLEAN_ZH.items()},
    "zh/long": LONG_ZH,
    "en/long": LONG_EN,
    "zh/dialogue": DIALOGUE_ZH,
    "zh/mixed": MIXED_ZH,
    "en/mixed": MIXED_EN,
}
